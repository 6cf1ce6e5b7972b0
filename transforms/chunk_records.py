"""Records sources: JSONL or Parquet rows that each become ONE interleaved request, so a
product photo and its description embed as one vector.

A row has ``id`` (required), optional ``title`` and ``text``, optional ``prefix`` (the
prompt the text is embedded with instead of the document prompt ``title: … | text: ``,
e.g. a translated gemini-embedding-001 task type), and ``media``: a list of
references (paths relative to the records file, absolute paths, or gs:// URIs). Each
referenced object goes through its own modality's chunker and must fit one request
(one chunk); together they must fit the per-request limits (images per request, one
audio/video/PDF, inline bytes). A bad row is rejected with its reason and the other
rows go on. Each row's ``source_uri`` is ``<records file>#<id>``.

Value types, the same for JSONL and Parquet: ``id`` is a string or an integer (written in
decimal: integer id columns are common); ``title`` and ``text`` are strings; ``media`` is
one string or a list of strings; null means absent. Anything else — a number as text, a
list as title, a float or boolean id — is refused as ``bad_record`` naming the column and
the type, never guessed. A reference names exactly one object (no glob or folder
expansion) inside the run's source roots (see ``transforms.list_sources``).
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Callable, Iterator

import pyarrow.parquet as pq

from transforms import fs
from transforms.chunk_errors import BAD_REFERENCE, READ_ERRORS, ChunkingError
from transforms.prompts import document_prefix
from transforms.settings import ChunkSettings
from transforms.tokens import estimate_text_tokens
from transforms.types import Chunk, Locator, SourceObject, make_chunk_id

ChunkMedia = Callable[[SourceObject], list]


BAD_RECORD = "bad_record"
CORRUPT_RECORDS = "corrupt_records"
RECORD_TOO_LARGE = "record_too_large"
_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean",
               list: "array", dict: "object", bytes: "bytes"}


def iter_rows(
    source: SourceObject, local_path: str, max_line_bytes: int
) -> Iterator[tuple[int, dict | ChunkingError]]:
    """(row number, row dict or the reason the row is unreadable), streaming.

    A JSON line is read only up to ``max_line_bytes`` (a longer one cannot make a request
    anyway), and a line that does not parse — nested too deep included — is one bad row;
    every later row still goes on.
    """
    if source.mime_type == "application/vnd.apache.parquet":
        yield from _parquet_rows(local_path)
        return
    with open(local_path, "rb") as fh:
        number = 0
        while True:
            raw = fh.readline(max_line_bytes + 1)
            if not raw:
                return
            number += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line, bounded
                    raw = fh.readline(max_line_bytes)
                yield number, ChunkingError(
                    RECORD_TOO_LARGE, f"line {number} is over {max_line_bytes} bytes"
                )
                continue
            if not raw.strip():
                continue
            yield number, _parse_line(number, raw)


def _parse_line(number: int, raw: bytes) -> dict | ChunkingError:
    try:
        row = json.loads(raw)
    except RecursionError:
        return ChunkingError(BAD_RECORD, f"line {number} is nested too deeply to parse")
    except ValueError as exc:
        return ChunkingError(BAD_RECORD, f"line {number} is not JSON: {exc}")
    if not isinstance(row, dict):
        return ChunkingError(BAD_RECORD, f"line {number} is not a JSON object")
    return row


def _parquet_rows(local_path: str) -> Iterator[tuple[int, dict | ChunkingError]]:
    number = 0
    try:
        parquet = pq.ParquetFile(local_path)
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except Exception as exc:  # pyarrow raises several unrelated types on bad files
        where = f" after row {number}" if number else ""
        raise ChunkingError(
            CORRUPT_RECORDS, f"not a readable Parquet file{where}: {exc}"
        ) from None


def _type_name(value) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _wrong_type(number: int, column: str, value, expected: str) -> ChunkingError:
    return ChunkingError(
        BAD_RECORD, f"row {number}: column {column!r} must be {expected}, got {_type_name(value)}"
    )


def record_fields(number: int, row: dict) -> tuple[str, str | None, str | None, list[str]]:
    """(id, title, text, media references) of one row, checked against the value types
    in the module docstring; raises ``bad_record`` naming the column and the type."""
    record_id = row.get("id")
    if type(record_id) is int:
        record_id = str(record_id)
    if record_id is None or record_id == "":
        raise ChunkingError(BAD_RECORD, f"row {number} has no 'id'")
    if not isinstance(record_id, str):
        raise _wrong_type(number, "id", record_id, "a string or an integer")
    title, text = row.get("title"), row.get("text")
    for column, value in (("title", title), ("text", text), ("prefix", row.get("prefix"))):
        if value is not None and not isinstance(value, str):
            raise _wrong_type(number, column, value, "a string")
    media = row.get("media")
    refs = [] if media is None else [media] if isinstance(media, str) else media
    if not isinstance(refs, list):
        raise _wrong_type(number, "media", media, "a string or a list of strings")
    for i, ref in enumerate(refs):
        if not isinstance(ref, str):
            raise _wrong_type(number, f"media[{i}]", ref, "a string")
    return record_id, title, text, refs


def resolve_reference(records_uri: str, ref: str) -> str:
    if fs.is_remote(ref) or os.path.isabs(ref):
        return ref
    if fs.is_remote(records_uri):
        return records_uri.rsplit("/", 1)[0] + "/" + ref
    return os.path.normpath(os.path.join(os.path.dirname(records_uri), ref))


@contextmanager
def _about(record_id: str, ref: str) -> Iterator[None]:
    """Say which record and which reference a media problem belongs to."""
    try:
        yield
    except ChunkingError as exc:
        raise ChunkingError(
            exc.error_class, f"record {record_id}: media {ref!r}: {exc.message}"
        ) from None


def record_chunk(
    source: SourceObject, number: int, row: dict, settings: ChunkSettings, chunk_media: ChunkMedia,
    describe: Callable[[str], SourceObject],
) -> Chunk:
    """One row → one Chunk whose parts interleave the text and every media object."""
    record_id, title, text, refs = record_fields(number, row)
    limits = settings.limits
    parts: list[dict] = []
    tokens = 0
    prefix = row.get("prefix")  # a prompt replacing the document prefix (migrations)
    if title or text:
        request_text = (document_prefix(title) if prefix is None else str(prefix)) + (text or "")
        if len(request_text.encode("utf-8")) > limits.text_byte_budget:
            raise ChunkingError(
                RECORD_TOO_LARGE,
                f"record {record_id}: text is over {limits.text_byte_budget} UTF-8 bytes, "
                "the bound that guarantees the token limit",
            )
        parts.append({"text": request_text})
        tokens += estimate_text_tokens(request_text)
    images = others = 0
    for ref in refs:
        with _about(record_id, ref):
            if not ref:
                raise ChunkingError(BAD_REFERENCE, "is empty")
            media_source = describe(resolve_reference(source.uri, ref))
        if media_source.detected_type == "image":
            images += 1
        elif media_source.detected_type in ("audio", "video", "pdf"):
            others += 1
        else:
            raise ChunkingError(
                "unsupported_type",
                f"record {record_id}: media {ref!r} is {media_source.detected_type}, "
                "not an image, audio, video or PDF",
            )
        with _about(record_id, ref):
            pieces = chunk_media(media_source)
        if len(pieces) != 1:
            raise ChunkingError(
                RECORD_TOO_LARGE,
                f"record {record_id}: media {ref!r} needs {len(pieces)} requests; a record "
                "must fit one request (split it or reference a shorter object)",
            )
        parts.extend(pieces[0].parts)
        tokens += pieces[0].est_tokens
    if images > limits.images_per_request:
        raise ChunkingError(
            RECORD_TOO_LARGE,
            f"record {record_id}: {images} images, the model takes {limits.images_per_request}",
        )
    if others > limits.max_parts_media:
        raise ChunkingError(
            RECORD_TOO_LARGE,
            f"record {record_id}: {others} audio/video/PDF objects, the model takes "
            f"{limits.max_parts_media} per request",
        )
    if not parts:
        raise ChunkingError(BAD_RECORD, f"record {record_id} has no title, text or media")
    size = sum(len(json.dumps(p)) for p in parts)
    if size > limits.inline_request_bytes:
        raise ChunkingError(
            RECORD_TOO_LARGE,
            f"record {record_id}: {size} bytes inline, over {limits.inline_request_bytes}",
        )
    uri = f"{source.uri}#{record_id}"
    locator = Locator("none", 0.0, 0.0)
    return Chunk(
        chunk_id=make_chunk_id(uri, source.generation, "records", locator, settings.version()),
        source_uri=uri,
        source_generation=source.generation,
        modality="records",
        mime_type="application/json",
        locator=locator,
        parts=tuple(parts),
        est_tokens=tokens,
    )


def chunk_records(
    source: SourceObject,
    local_path: str,
    settings: ChunkSettings,
    chunk_media: ChunkMedia,
    describe: Callable[[str], SourceObject],
) -> Iterator[Chunk | ChunkingError]:
    """Yield a Chunk per good row and a ChunkingError (not raised) per bad row."""
    seen: set[str] = set()
    for number, row in iter_rows(source, local_path, settings.limits.inline_request_bytes):
        if isinstance(row, ChunkingError):
            yield row
            continue
        try:
            chunk = record_chunk(source, number, row, settings, chunk_media, describe)
        except ChunkingError as exc:
            yield exc
            continue
        except (*READ_ERRORS, ValueError) as exc:
            yield ChunkingError(BAD_RECORD, f"row {number}: {exc}")
            continue
        if chunk.source_uri in seen:
            yield ChunkingError(BAD_RECORD, f"duplicate record id in row {number}: {chunk.source_uri}")
            continue
        seen.add(chunk.source_uri)
        yield chunk
