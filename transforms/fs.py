"""File access for local paths and gs:// URIs alike, through Beam's FileSystems.

One small surface so every stage reads and writes run outputs the same way on
DirectRunner and on Dataflow workers.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from apache_beam.io.filesystems import FileSystems


def is_remote(uri: str) -> bool:
    return "://" in uri


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return os.path.join(base, *parts)


def exists(uri: str) -> bool:
    return FileSystems.exists(uri)


def read_bytes(uri: str) -> bytes:
    with FileSystems.open(uri, compression_type="uncompressed") as fh:
        return fh.read()


def read_head(uri: str, n: int) -> bytes:
    with FileSystems.open(uri, compression_type="uncompressed") as fh:
        return fh.read(n)


def iter_lines(uri: str) -> Iterator[str]:
    """Stream a text object line by line (bounded memory for large result files)."""
    with FileSystems.open(uri, compression_type="uncompressed") as fh:
        for raw in fh:
            yield raw.decode("utf-8", errors="replace")


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object. Local writes are atomic and durable (see ``open_write``)."""
    if is_remote(uri):
        with FileSystems.create(uri, compression_type="uncompressed") as fh:
            fh.write(data)
        return
    with open_write(uri) as fh:
        fh.write(data)


@contextlib.contextmanager
def open_write(uri: str) -> Iterator:
    """Stream-write an object; local files appear atomically, fsynced, when the block ends
    (a crash leaves the old version or the new one, never a torn file)."""
    if is_remote(uri):
        with FileSystems.create(uri, compression_type="uncompressed") as fh:
            yield fh
        return
    directory = os.path.dirname(os.path.abspath(uri))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
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
    GCS: ``if_generation_match=0``.
    """
    if uri.startswith("gs://"):
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud import storage

        bucket, _, key = uri[len("gs://"):].partition("/")
        blob = storage.Client().bucket(bucket).blob(key)
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


def delete(uri: str) -> None:
    if exists(uri):
        FileSystems.delete([uri])


def match(pattern: str) -> list[tuple[str, int]]:
    """(path, size) of every object matching a glob, sorted by path."""
    result = FileSystems.match([pattern])[0]
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
        with os.fdopen(fd, "wb") as out, FileSystems.open(
            uri, compression_type="uncompressed"
        ) as src:
            shutil.copyfileobj(src, out, length=8 << 20)
        yield tmp
    finally:
        os.unlink(tmp)
