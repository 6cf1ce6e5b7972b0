"""File access for local paths and gs:// URIs alike.

One small surface so every stage reads and writes run outputs the same way on every
runner. Reads, listings and streamed writes go through Beam's FileSystems; everything
that must be exactly-once (create-only writes, compare-and-set, deletes) goes through
google-cloud-storage object calls, one object per request: no GCS JSON *batch* calls
(Beam's rename and delete use them, and fake-gcs-server cannot serve them), no
temp-file-then-rename.

Which write to use:
- ``write_once``: outputs a pipeline step writes exactly once per run phase (listing, dead
  letters, tombstones). Create-only; a retried worker writing identical bytes is a no-op,
  different bytes raise :class:`ConflictingWrite`.
- ``create_only``: claims (ledger records, the active-run slot); exactly one writer wins.
- ``write_bytes`` / ``open_write``: deterministic names whose content a later phase may
  legitimately replace (parts rewritten after a redrive, run state, the index on rebuild).
  Atomic: readers see the old object or the new one, never a torn one.
- ``read_modify_write``: documents several processes update (run.json): compare-and-set on
  GCS, an exclusive lock locally, so no update is lost.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from typing import Callable, Iterator

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


class ConflictingWrite(RuntimeError):
    """A write-once object already exists with different content: two executions of one
    deterministic step disagree (its input changed under it), so neither is trusted."""


def use_emulator_credentials() -> bool:
    """Against a GCS emulator (``STORAGE_EMULATOR_HOST`` set), make Beam's GcsIO use an
    anonymous client at once. Beam otherwise calls ``google.auth.default()`` with retries and
    back-off first, a ~25 s stall in every process (driver and each worker) on a machine
    without Google credentials. Never applies to real GCS: the variable must be set."""
    if not os.environ.get(EMULATOR_ENV):
        return False
    try:
        from apache_beam.internal.gcp import auth
    except ImportError:  # Beam without the gcp extra: no GcsIO to configure
        return False
    creds = auth._Credentials  # noqa: SLF001 - Beam's process-wide credential cache
    with creds._credentials_lock:  # noqa: SLF001
        if not creds._credentials_init:  # noqa: SLF001
            creds._credentials_init, creds._credentials = True, None  # noqa: SLF001
    return True


# Every process that imports this module (the launcher, Dask and Beam worker processes,
# which unpickle DoFns referring to it) gets the emulator set-up before its first GCS call.
use_emulator_credentials()


def is_remote(uri: str) -> bool:
    return "://" in uri


def is_gcs(uri: str) -> bool:
    return uri.startswith("gs://")


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return os.path.join(base, *parts)


@functools.lru_cache(maxsize=1)
def _gcs_client():
    """One google-cloud-storage client per process (it holds a connection pool)."""
    from google.cloud import storage

    return storage.Client()


def gcs_blob(uri: str):
    """The google-cloud-storage Blob for ``gs://bucket/key``."""
    bucket, _, key = uri[len("gs://"):].partition("/")
    return _gcs_client().bucket(bucket).blob(key)


@functools.lru_cache(maxsize=1)
def _filesystems():
    """Beam's FileSystems, imported at first use: the Airflow DAG processor imports this
    module (through the run layout) on every parse and never reads a file, and importing
    Beam takes seconds."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def open_read(uri: str):
    """A binary read handle on ``uri``, local or gs://, never decompressed by suffix."""
    return _filesystems().open(uri, compression_type="uncompressed")


def exists(uri: str) -> bool:
    return _filesystems().exists(uri)


def read_bytes(uri: str) -> bytes:
    with open_read(uri) as fh:
        return fh.read()


def read_head(uri: str, n: int) -> bytes:
    with open_read(uri) as fh:
        return fh.read(n)


def iter_lines(uri: str) -> Iterator[str]:
    """Stream a text object line by line (bounded memory for large result files)."""
    with open_read(uri) as fh:
        for raw in fh:
            yield raw.decode("utf-8", errors="replace")


def write_bytes(uri: str, data: bytes) -> None:
    """Write (or replace) a whole object atomically (see ``open_write``)."""
    if is_gcs(uri):
        gcs_blob(uri).upload_from_string(data)
        return
    with open_write(uri) as fh:
        fh.write(data)


@contextlib.contextmanager
def open_write(uri: str, buffer_bytes: int = -1) -> Iterator:
    """Stream-write an object; it appears (or is replaced) atomically when the block ends:
    a GCS upload is committed only when it completes; a local file is written to a hidden
    temp file, fsynced and renamed into place. A crash leaves the old version or the new
    one, never a torn object."""
    if is_remote(uri):
        with _filesystems().create(uri, compression_type="uncompressed") as fh:
            yield fh
        return
    directory = os.path.dirname(os.path.abspath(uri))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb", buffer_bytes) as fh:  # -1: Python's default size
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, uri)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def create_only(uri: str, data: bytes) -> int | None:
    """Write ``uri`` only if it does not exist. Returns the new object's generation
    (0 for local files) or None if it already existed: exactly one writer ever wins.

    Local: write and fsync a hidden temp file, then hard-link it into place (fails if
    the name exists), so a losing racer never reads a half-written file.
    GCS: one upload with ``if_generation_match=0``.
    """
    if is_gcs(uri):
        from google.api_core.exceptions import PreconditionFailed

        blob = gcs_blob(uri)
        try:
            blob.upload_from_string(data, if_generation_match=0)
        except PreconditionFailed:
            return None
        return blob.generation
    directory = os.path.dirname(os.path.abspath(uri))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-create-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, uri)
    except FileExistsError:
        return None
    finally:
        os.unlink(tmp)
    return 0


def write_once(uri: str, data: bytes) -> bool:
    """Create ``uri`` with ``data`` exactly once. True if this call wrote it; False if it
    already held exactly these bytes (a retried worker: nothing to do). Raises
    ConflictingWrite if it holds other bytes."""
    if create_only(uri, data) is not None:
        return True
    existing = read_bytes(uri)
    if existing == data:
        return False
    raise ConflictingWrite(
        f"{uri} already exists with different content ({len(existing)} bytes, sha256 "
        f"{hashlib.sha256(existing).hexdigest()[:12]}; this write: {len(data)} bytes, sha256 "
        f"{hashlib.sha256(data).hexdigest()[:12]}): two executions of a deterministic step "
        "disagree, so its input changed while it ran (fix: rerun the command; it clears "
        "the phase's outputs before writing them again)"
    )


def read_modify_write(uri: str, change: Callable[[bytes | None], bytes], attempts: int = 20) -> bytes:
    """Replace ``uri`` by ``change(current bytes or None)`` without losing a concurrent
    update: GCS compare-and-set on the generation read (retried on conflict); locally
    an exclusive ``flock`` on a hidden ``.<name>.lock`` beside it around the read and the
    atomic replace."""
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound, PreconditionFailed

        for _ in range(attempts):
            blob = gcs_blob(uri)
            try:
                current = blob.download_as_bytes()
                generation = blob.generation
            except NotFound:
                current, generation = None, 0
            data = change(current)
            try:
                blob.upload_from_string(data, if_generation_match=generation)
                return data
            except PreconditionFailed:
                continue
        raise ConflictingWrite(f"{uri}: {attempts} concurrent updates in a row; giving up")
    import fcntl

    directory = os.path.dirname(os.path.abspath(uri))
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f".{os.path.basename(uri)}.lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(uri, "rb") as fh:
                current = fh.read()
        except FileNotFoundError:
            current = None
        data = change(current)
        with open_write(uri) as fh:
            fh.write(data)
    return data


def delete(uri: str) -> None:
    """Delete one object if it exists (one plain request; no batch API)."""
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            gcs_blob(uri).delete()
        return
    if is_remote(uri):
        if exists(uri):
            _filesystems().delete([uri])
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(uri)


def delete_many(uris: list[str]) -> None:
    for uri in uris:
        delete(uri)


def match(pattern: str) -> list[tuple[str, int]]:
    """(path, size) of every object matching a glob, sorted by path."""
    result = _filesystems().match([pattern])[0]
    return sorted((m.path, m.size_in_bytes) for m in result.metadata_list)


def makedirs(uri: str) -> None:
    if not is_remote(uri):
        os.makedirs(uri, exist_ok=True)


@contextlib.contextmanager
def local_copy(uri: str, suffix: str = "") -> Iterator[str]:
    """A local file path for ``uri``: the file itself when local, else a temp download."""
    if not is_remote(uri):
        yield uri
        return
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="embedpipe-")
    try:
        with os.fdopen(fd, "wb") as out, open_read(uri) as src:
            shutil.copyfileobj(src, out, length=8 << 20)
        yield tmp
    finally:
        os.unlink(tmp)
