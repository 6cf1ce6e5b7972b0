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
"""
from __future__ import annotations

import json
import os
from typing import Callable, Iterator

import pyarrow.parquet as pq

from transforms import fs
from transforms.chunk_errors import ChunkingError
from transforms.prompts import document_prefix
from transforms.settings import ChunkSettings
from transforms.tokens import estimate_text_tokens
from transforms.types import Chunk, Locator, SourceObject, make_chunk_id

ChunkMedia = Callable[[SourceObject], list]


def iter_rows(source: SourceObject, local_path: str) -> Iterator[tuple[int, dict | ChunkingError]]:
    """(row number, row dict or the reason the row is unreadable), streaming."""
    if source.mime_type == "application/vnd.apache.parquet":
        try:
            parquet = pq.ParquetFile(local_path)
        except Exception as exc:  # pyarrow raises several unrelated types on bad files
            raise ChunkingError("corrupt_records", f"not a readable Parquet file: {exc}") from None
        number = 0
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield number, row
        return
    with open(local_path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as exc:
                yield number, ChunkingError("bad_record", f"line {number} is not JSON: {exc}")
                continue
            if not isinstance(row, dict):
                yield number, ChunkingError("bad_record", f"line {number} is not a JSON object")
                continue
            yield number, row


def resolve_reference(records_uri: str, ref: str) -> str:
    if fs.is_remote(ref) or os.path.isabs(ref):
        return ref
    if fs.is_remote(records_uri):
        return records_uri.rsplit("/", 1)[0] + "/" + ref
    return os.path.normpath(os.path.join(os.path.dirname(records_uri), ref))


def record_chunk(
    source: SourceObject, number: int, row: dict, settings: ChunkSettings, chunk_media: ChunkMedia,
    describe: Callable[[str], SourceObject],
) -> Chunk:
    """One row → one Chunk whose parts interleave the text and every media object."""
    record_id = row.get("id")
    if record_id is None or str(record_id) == "":
        raise ChunkingError("bad_record", f"row {number} has no 'id'")
    record_id = str(record_id)
    limits = settings.limits
    parts: list[dict] = []
    tokens = 0
    title, text = row.get("title"), row.get("text")
    prefix = row.get("prefix")
    if title or text:
        request_text = (document_prefix(title) if prefix is None else str(prefix)) + (text or "")
        if len(request_text.encode("utf-8")) > limits.text_byte_budget:
            raise ChunkingError(
                "record_too_large",
                f"record {record_id}: text is over {limits.text_byte_budget} UTF-8 bytes, "
                "the bound that guarantees the token limit",
            )
        parts.append({"text": request_text})
        tokens += estimate_text_tokens(request_text)
    refs = row.get("media") or []
    if isinstance(refs, str):
        refs = [refs]
    images = others = 0
    for ref in refs:
        media_source = describe(resolve_reference(source.uri, str(ref)))
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
        pieces = chunk_media(media_source)
        if len(pieces) != 1:
            raise ChunkingError(
                "record_too_large",
                f"record {record_id}: media {ref!r} needs {len(pieces)} requests; a record "
                "must fit one request (split it or reference a shorter object)",
            )
        parts.extend(pieces[0].parts)
        tokens += pieces[0].est_tokens
    if images > limits.images_per_request:
        raise ChunkingError(
            "record_too_large",
            f"record {record_id}: {images} images, the model takes {limits.images_per_request}",
        )
    if others > limits.max_parts_media:
        raise ChunkingError(
            "record_too_large",
            f"record {record_id}: {others} audio/video/PDF objects, the model takes "
            f"{limits.max_parts_media} per request",
        )
    if not parts:
        raise ChunkingError("bad_record", f"record {record_id} has no title, text or media")
    size = sum(len(json.dumps(p)) for p in parts)
    if size > limits.inline_request_bytes:
        raise ChunkingError(
            "record_too_large",
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
    for number, row in iter_rows(source, local_path):
        if isinstance(row, ChunkingError):
            yield row
            continue
        try:
            chunk = record_chunk(source, number, row, settings, chunk_media, describe)
        except ChunkingError as exc:
            yield exc
            continue
        except (OSError, ValueError) as exc:
            yield ChunkingError("bad_record", f"row {number}: {exc}")
            continue
        if chunk.source_uri in seen:
            yield ChunkingError("bad_record", f"duplicate record id in row {number}: {chunk.source_uri}")
            continue
        seen.add(chunk.source_uri)
        yield chunk
