"""Open the configured backend as a BatchClient: the embedded emulator or any endpoint
that speaks the Gemini REST protocol. Both go through the same google-genai client.
"""
from __future__ import annotations

import contextlib
import secrets
from typing import Iterator

from pipeline.config import Settings
from pipeline.emulator import EmulatorServer
from transforms import fs
from transforms.gemini_client import BatchClient


def emulator_state_dir(settings: Settings) -> str | None:
    """Persist emulator state beside local outputs so split mode (submit now, collect
    in another process) finds its jobs again, as it would on the real service."""
    configured = settings.config.emulator.state_dir
    if configured:
        return configured
    if fs.is_remote(settings.config.output):
        return None
    return fs.join(settings.config.output, ".emulator")


@contextlib.contextmanager
def open_backend(settings: Settings) -> Iterator[BatchClient]:
    c = settings.config
    if c.backend == "emulator":
        key = secrets.token_urlsafe(24)
        server = EmulatorServer(
            host=c.emulator.host,
            port=c.emulator.port,
            api_key=key,
            state_dir=emulator_state_dir(settings),
            pending_seconds=c.emulator.pending_seconds,
            running_seconds=c.emulator.running_seconds,
            limits_by_model=settings.all_limits,
        )
        base_url = server.start()
        try:
            yield BatchClient.connect(
                base_url, key, timeout_s=c.gemini.timeout_s, retry_attempts=c.gemini.retry_attempts
            )
        finally:
            server.stop()
        return
    yield BatchClient.connect(
        c.gemini.base_url,
        settings.api_key(),
        timeout_s=c.gemini.timeout_s,
        retry_attempts=c.gemini.retry_attempts,
    )
