"""ListSources: expand source URIs (files, directories, globs, gs://bucket/prefix/**)
into one SourceObject per object, typed by content rather than by extension.

Expansion streams (os.walk / paginated GCS listing) inside a DoFn, so the driver never
holds the whole corpus listing in memory.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from typing import Iterator

import apache_beam as beam

from transforms import fs
from transforms.detect_type import detect_type
from transforms.types import SourceObject

HEAD_BYTES = 4096
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class ListedObject:
    """What a listing knows before the object is opened."""

    uri: str
    size_bytes: int
    generation: str
    content_hash: str | None = None


def _is_hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.split(os.sep) if part not in ("", ".", ".."))


def expand_local(pattern: str) -> Iterator[ListedObject]:
    """Files under a directory (recursive), matching a glob, or the file itself."""
    pattern = os.path.expanduser(pattern)
    if any(c in pattern for c in _GLOB_CHARS):
        paths = (p for p in sorted(glob.iglob(pattern, recursive=True)) if os.path.isfile(p))
    elif os.path.isdir(pattern):
        paths = _walk(pattern)
    elif os.path.isfile(pattern):
        paths = iter([pattern])
    else:
        raise FileNotFoundError(f"source {pattern!r} does not exist")
    for path in paths:
        st = os.stat(path)
        yield ListedObject(
            uri=os.path.abspath(path),
            size_bytes=st.st_size,
            generation=f"{st.st_mtime_ns}-{st.st_size}",
        )


def _walk(root: str) -> Iterator[str]:
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and not _is_hidden(name):
                yield os.path.join(directory, name)


def glob_regex(pattern: str) -> re.Pattern:
    """Glob → regex with path semantics: ``*``/``?`` stay within one path segment,
    ``**`` crosses segments (as local ``glob(recursive=True)`` does)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def expand_gcs(pattern: str) -> Iterator[ListedObject]:
    """Objects under gs://bucket/path: the object itself, everything below ``path/``, or
    the objects matching a glob."""
    from google.cloud import storage

    bucket_name, _, path = pattern[len("gs://") :].partition("/")
    cut = min((path.find(c) for c in _GLOB_CHARS if c in path), default=-1)
    if cut >= 0:
        prefix, matches = path[:cut], glob_regex(path).match
    else:
        folder = path.rstrip("/") + "/" if path else ""
        prefix = path

        def matches(name: str) -> bool:
            return name == path or name.startswith(folder)

    client = storage.Client()
    for blob in client.list_blobs(bucket_name, prefix=prefix or None):
        if blob.name.endswith("/") or not matches(blob.name):
            continue
        yield ListedObject(
            uri=f"gs://{bucket_name}/{blob.name}",
            size_bytes=int(blob.size or 0),
            generation=str(blob.generation),
            content_hash=f"crc32c:{blob.crc32c}" if blob.crc32c else None,
        )


def expand_pattern(pattern: str) -> Iterator[ListedObject]:
    if pattern.startswith("gs://"):
        return expand_gcs(pattern)
    if fs.is_remote(pattern):
        raise ValueError(f"source {pattern!r}: only local paths and gs:// URIs are supported")
    return expand_local(pattern)


def describe(listed: ListedObject) -> SourceObject:
    """Read the first bytes and type the object by content."""
    head = fs.read_head(listed.uri, HEAD_BYTES) if listed.size_bytes else b""
    detected, mime = detect_type(head, listed.uri, listed.size_bytes)
    return SourceObject(
        uri=listed.uri,
        size_bytes=listed.size_bytes,
        generation=listed.generation,
        detected_type=detected,
        mime_type=mime,
        content_hash=listed.content_hash,
    )


def expand_excluding(pattern: str, exclude_prefix: str | None) -> Iterator[ListedObject]:
    """Expand a pattern, leaving out the run's own output tree if it lies inside."""
    for listed in expand_pattern(pattern):
        if exclude_prefix and listed.uri.startswith(exclude_prefix):
            continue
        yield listed


class ListSources(beam.PTransform):
    """Source URIs → SourceObjects, skipping anything under ``exclude_prefix``."""

    def __init__(self, patterns: list[str], exclude_prefix: str | None = None):
        super().__init__()
        self._patterns = list(patterns)
        self._exclude = exclude_prefix

    def expand(self, pbegin):
        return (
            pbegin
            | "Source patterns" >> beam.Create(self._patterns)
            | "Expand patterns" >> beam.FlatMap(expand_excluding, self._exclude)
            | "Spread objects" >> beam.Reshuffle()
            | "Detect types" >> beam.Map(describe)
        )
