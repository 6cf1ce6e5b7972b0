"""Named crash points: ``EMBEDPIPE_CRASH_AT=<name>`` makes the process SIGKILL itself
at that point, so tests can prove that a ``kill -9`` at exactly that step loses nothing
and pays for nothing twice. Unset (always, in production) it costs one dict lookup.
"""
from __future__ import annotations

import os
import signal

ENV = "EMBEDPIPE_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
