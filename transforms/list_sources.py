"""ListSources: expand source URIs (files, directories, globs, gs://bucket/prefix/**)
into one SourceObject per object, typed by content rather than by extension.

Expansion streams (os.walk / paginated GCS listing) inside a DoFn, so the driver never
holds the whole corpus listing in memory.

Every entry a listing meets becomes a SourceObject, also the ones that cannot be used, so
one broken entry never stops a run and the manifest still counts it: a dangling symlink,
a symlink loop, a file the process may not read or a symlink leading out of the source
roots is ``unreadable`` with ``problem`` naming the dead-letter class; a FIFO, socket or
device (opening a FIFO blocks) and a symlink to a directory are skipped. The Chunk stage
turns them into a dead letter or a skip without opening them.

Symlink policy: a symlink is followed only when its resolved target lies inside a source
root (what a ``sources`` entry names: a directory, a file, or a glob's fixed prefix; see
``transforms.roots``) or an ``allowed_roots`` entry. The decision uses the resolved path
alone (``realpath``, which only follows link names), before the target is opened, so a
refusal reads the same whether the target exists or not. Records media references follow
the same rule (``describe_reference``).
"""
from __future__ import annotations

import errno
import glob
import os
import re
import stat
from dataclasses import dataclass
from typing import Iterator, Sequence

import apache_beam as beam

from transforms import fs
from transforms.chunk_errors import (
    BAD_REFERENCE,
    BROKEN_SYMLINK,
    DIRECTORY_SYMLINK,
    NOT_FOUND,
    OUTSIDE_SOURCES,
    PERMISSION_DENIED,
    SPECIAL_FILE,
    SYMLINK_LOOP,
    UNDECODABLE_NAME,
    READ_ERRORS,
    ChunkingError,
    read_error_class,
    read_error_message,
)
from transforms.detect_type import detect_type
from transforms.roots import GLOB_CHARS, inside_roots
from transforms.types import SourceObject

HEAD_BYTES = 4096
UNREADABLE = "unreadable"  # detected_type of an entry listing could not (or would not) open
SPECIAL = "special"  # FIFO, socket, device
DIRECTORY = "directory"  # a symlink to a directory (never followed)
SKIPPED_TYPES = frozenset({SPECIAL, DIRECTORY})
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)
_MESSAGES = {
    BROKEN_SYMLINK: "dangling symlink: its target does not exist (fix: restore the target or remove the link)",
    SYMLINK_LOOP: "symlink loop: the link leads back to itself (fix: remove the link)",
    PERMISSION_DENIED: "permission denied: this process may not read it (fix: chmod/chown it, or run as a user who can)",
    OUTSIDE_SOURCES: "symlink leads outside the source roots, not followed (fix: add the target's folder to allowed_roots)",
    DIRECTORY_SYMLINK: "symlink to a directory, not followed (fix: list the directory itself in sources)",
    UNDECODABLE_NAME: "the file name is not valid UTF-8, so no output can name it (fix: rename the file)",
}
_GCS_MESSAGES = {
    PERMISSION_DENIED: "permission denied: this identity may not read the object (fix: grant it "
                       "storage.objects.get on the bucket, e.g. roles/storage.objectViewer)",
    NOT_FOUND: "the object was deleted after it was listed: nothing left to embed (a rerun lists "
               "the bucket again)",
}


def read_failure(uri: str, exc: BaseException) -> tuple[str, str]:
    """The dead-letter class and message of a ``READ_ERRORS`` error met reading ``uri``."""
    problem = read_error_class(exc)
    known = (_GCS_MESSAGES if fs.is_gcs(uri) else _MESSAGES).get(problem)
    return problem, known or f"cannot read it: {read_error_message(exc)}"


@dataclass(frozen=True)
class ListedObject:
    """What a listing knows before the object is opened."""

    uri: str
    size_bytes: int
    generation: str
    content_hash: str | None = None
    detected_type: str | None = None  # set when listing already knows: unreadable | special | directory
    problem: str | None = None
    problem_message: str = ""


def _is_hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.split(os.sep) if part not in ("", ".", ".."))


# -- local entries -----------------------------------------------------------------------
def _generation(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns}-{st.st_size}"


def _problem(uri: str, st: os.stat_result | None, error_class: str, message: str = "",
             detected_type: str = UNREADABLE) -> ListedObject:
    """An entry that will not be opened. Its size is 0 (a symlink's own size is the length
    of the target's name) and its generation the entry's own mtime: nothing about a target."""
    return ListedObject(
        uri=uri,
        size_bytes=0,
        generation=f"{st.st_mtime_ns}-0" if st else "0-0",
        detected_type=detected_type,
        problem=error_class,
        problem_message=message or _MESSAGES[error_class],
    )


def _special_kind(mode: int) -> str | None:
    return next((name for test, name in _SPECIAL_KINDS if test(mode)), None)


def local_entry(path: str, roots: Sequence[str] = (), check_path: bool = False) -> ListedObject | None:
    """One local directory entry as a ListedObject; ``None`` for a real directory.

    Symlinks (and, with ``check_path``, any path: a glob or a reference may pass through
    linked folders) must resolve inside ``roots`` (no check when ``roots`` is empty).
    Only the resolved path decides a refusal; the target is never stat'ed or opened before.
    """
    uri = os.path.abspath(path)
    try:
        lst = os.lstat(uri)
    except OSError as exc:
        return _problem(uri, None, read_error_class(exc), f"cannot stat: {exc.strerror}")
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:  # bytes os.fsdecode kept as surrogates
        return _problem(uri, lst, UNDECODABLE_NAME)
    link = stat.S_ISLNK(lst.st_mode)
    if roots and (link or check_path) and not inside_roots(os.path.realpath(uri), roots):
        return _problem(uri, lst, OUTSIDE_SOURCES)
    st = lst
    if link:
        try:
            st = os.stat(uri)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return _problem(uri, lst, BROKEN_SYMLINK)
            if exc.errno == errno.ELOOP:
                return _problem(uri, lst, SYMLINK_LOOP)
            return _problem(uri, lst, read_error_class(exc), f"cannot follow the symlink: {exc.strerror}")
        if stat.S_ISDIR(st.st_mode):
            return _problem(uri, lst, DIRECTORY_SYMLINK, detected_type=DIRECTORY)
    elif stat.S_ISDIR(st.st_mode):
        return None
    kind = _special_kind(st.st_mode)
    if kind is not None:
        return _problem(uri, lst, SPECIAL_FILE, f"{kind}: not a regular file, skipped without opening it",
                        detected_type=SPECIAL)
    return ListedObject(uri=uri, size_bytes=st.st_size, generation=_generation(st))


def expand_local(pattern: str, roots: Sequence[str] = ()) -> Iterator[ListedObject]:
    """Files under a directory (recursive), matching a glob, or the file itself."""
    pattern = os.path.expanduser(pattern)
    if any(c in pattern for c in GLOB_CHARS):
        for path in sorted(glob.iglob(pattern, recursive=True)):
            listed = local_entry(path, roots, check_path=True)
            if listed is not None and listed.detected_type != DIRECTORY:
                yield listed
    elif os.path.isdir(pattern):
        yield from _walk(pattern, roots)
    elif os.path.lexists(pattern):
        listed = local_entry(pattern, roots)
        if listed is not None:
            yield listed
    else:
        raise FileNotFoundError(f"source {pattern!r} does not exist")


def _walk(root: str, roots: Sequence[str]) -> Iterator[ListedObject]:
    """Every non-hidden entry below ``root``; an unreadable folder is one dead letter."""
    failed: list[OSError] = []
    for directory, dirs, files in os.walk(root, onerror=failed.append):
        yield from _unlistable(failed)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        # os.walk never descends into a symlinked folder: report it instead of dropping it
        linked = [d for d in dirs if os.path.islink(os.path.join(directory, d))]
        dirs[:] = [d for d in dirs if d not in linked]
        names = linked + sorted(f for f in files if not f.startswith(".") and not _is_hidden(f))
        for name in names:
            listed = local_entry(os.path.join(directory, name), roots)
            if listed is not None:  # None: it became a folder since os.walk looked
                yield listed
    yield from _unlistable(failed)


def _unlistable(failed: list[OSError]) -> Iterator[ListedObject]:
    while failed:
        exc = failed.pop()
        yield _problem(os.path.abspath(exc.filename), None, read_error_class(exc),
                       f"cannot list the folder: {exc.strerror}")


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
    cut = min((path.find(c) for c in GLOB_CHARS if c in path), default=-1)
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
        yield _listed_blob(bucket_name, blob)


def _listed_blob(bucket_name: str, blob) -> ListedObject:
    return ListedObject(
        uri=f"gs://{bucket_name}/{blob.name}",
        size_bytes=int(blob.size or 0),
        generation=str(blob.generation),
        content_hash=f"crc32c:{blob.crc32c}" if blob.crc32c else None,
    )


def gcs_object(uri: str) -> ListedObject | None:
    """The one object ``uri`` names exactly, or ``None`` (no prefix or glob expansion)."""
    from google.cloud import storage

    bucket_name, _, name = uri[len("gs://") :].partition("/")
    if not name or name.endswith("/"):
        return None
    blob = storage.Client().bucket(bucket_name).get_blob(name)
    return None if blob is None else _listed_blob(bucket_name, blob)


def expand_pattern(pattern: str, roots: Sequence[str] = ()) -> Iterator[ListedObject]:
    if pattern.startswith("gs://"):
        return expand_gcs(pattern)
    if fs.is_remote(pattern):
        raise ValueError(f"source {pattern!r}: only local paths and gs:// URIs are supported")
    return expand_local(pattern, roots)


def describe(listed: ListedObject) -> SourceObject:
    """Read the first bytes and type the object by content. An object listing already
    refused, or whose first bytes cannot be read, comes back ``unreadable`` with the
    reason, for the Chunk stage to dead-letter."""
    detected, mime, problem, message = listed.detected_type, None, listed.problem, listed.problem_message
    if problem is None:
        try:
            head = fs.read_head(listed.uri, HEAD_BYTES) if listed.size_bytes else b""
        except READ_ERRORS as exc:
            detected = UNREADABLE
            problem, message = read_failure(listed.uri, exc)
        else:
            detected, mime = detect_type(head, listed.uri, listed.size_bytes)
    return SourceObject(
        uri=listed.uri,
        size_bytes=listed.size_bytes,
        generation=listed.generation,
        detected_type=detected,
        mime_type=mime,
        content_hash=listed.content_hash,
        problem=problem,
        problem_message=message,
    )


def reference_roots(records_uri: str, roots: Sequence[str]) -> tuple[str, ...]:
    """The roots a records file's references must stay in: a root that names the records
    file itself (a ``sources`` entry naming one file) stands for that file's folder."""
    resolved = records_uri if fs.is_remote(records_uri) else os.path.realpath(records_uri)
    return tuple(
        (root.rsplit("/", 1)[0] or "/") if root.rstrip("/") == resolved else root for root in roots
    )


def _normalized_gcs(uri: str) -> str | None:
    """``gs://bucket/a/../b`` → ``gs://bucket/b``; ``None`` if it climbs above the bucket."""
    bucket, _, name = uri[len("gs://") :].partition("/")
    parts: list[str] = []
    for segment in name.split("/"):
        if segment == "..":
            if not parts:
                return None
            parts.pop()
        elif segment not in ("", "."):
            parts.append(segment)
    return f"gs://{bucket}/" + "/".join(parts) + ("/" if name.endswith("/") and parts else "")


def describe_reference(uri: str, roots: Sequence[str] = ()) -> SourceObject:
    """The one object a records reference names, typed like a listed object.

    The reference must resolve inside ``roots`` (no check when empty) — decided on the
    resolved path before anything is opened, so the refusal is the same whether the
    target exists or not — and must name exactly one object: never a glob, a folder or a
    prefix. Raises ChunkingError (``outside_sources`` | ``bad_reference``).
    """
    if uri.startswith("gs://"):
        resolved = _normalized_gcs(uri)
        if roots and (resolved is None or not inside_roots(resolved, roots)):
            raise ChunkingError(OUTSIDE_SOURCES, _REFERENCE_OUTSIDE)
        listed = gcs_object(resolved)
        if listed is None:
            raise ChunkingError(
                BAD_REFERENCE,
                "names no object (a reference is one exact object name, not a prefix or a glob)",
            )
        return _usable(describe(listed))
    if fs.is_remote(uri):
        raise ChunkingError(BAD_REFERENCE, "only local paths and gs:// URIs can be referenced")
    if roots and not inside_roots(os.path.realpath(uri), roots):
        raise ChunkingError(OUTSIDE_SOURCES, _REFERENCE_OUTSIDE)
    if not os.path.lexists(uri):
        raise ChunkingError(BAD_REFERENCE, "does not exist (a reference is one exact file name, not a glob)")
    listed = local_entry(uri, roots, check_path=True)
    if listed is None or listed.detected_type == DIRECTORY:
        raise ChunkingError(BAD_REFERENCE, "names a folder, not one file")
    return _usable(describe(listed))


def _usable(source: SourceObject) -> SourceObject:
    """A referenced object listing could not use is refused with the listing's reason."""
    if source.problem is not None:
        raise ChunkingError(source.problem, source.problem_message)
    return source


_REFERENCE_OUTSIDE = (
    "leads outside the source roots, not read "
    "(fix: list its folder in sources, or add it to allowed_roots)"
)


def expand_excluding(
    pattern: str, exclude_prefix: str | None, roots: Sequence[str] = ()
) -> Iterator[ListedObject]:
    """Expand a pattern, leaving out the run's own output tree if it lies inside."""
    for listed in expand_pattern(pattern, roots):
        if exclude_prefix and listed.uri.startswith(exclude_prefix):
            continue
        yield listed


class ListSources(beam.PTransform):
    """Source URIs → SourceObjects (unusable entries included, marked with their problem),
    skipping anything under ``exclude_prefix``; symlinks must stay inside ``roots``."""

    def __init__(
        self, patterns: list[str], exclude_prefix: str | None = None, roots: Sequence[str] = ()
    ):
        super().__init__()
        self._patterns = list(patterns)
        self._exclude = exclude_prefix
        self._roots = tuple(roots)

    def expand(self, pbegin):
        return (
            pbegin
            | "Source patterns" >> beam.Create(self._patterns)
            | "Expand patterns" >> beam.FlatMap(expand_excluding, self._exclude, self._roots)
            | "Spread objects" >> beam.Reshuffle()
            | "Detect types" >> beam.Map(describe)
        )
