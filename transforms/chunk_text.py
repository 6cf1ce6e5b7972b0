"""Text chunking: decode, split on paragraph/line/sentence/word boundaries, and prove
every chunk fits the model's token limit.

The proof: Gemma-family tokenizers never produce more tokens than UTF-8 bytes, so a
request text of at most ``limits.text_byte_budget`` bytes (prompt prefix included) is
within the token limit, whatever the script (research media-chunking.md §6).
Locators are character offsets into the decoded text.
"""
from __future__ import annotations

import codecs
import os
from typing import Iterator

from transforms.chunk_errors import ChunkingError
from transforms.detect_type import utf16_without_bom
from transforms.prompts import document_prefix
from transforms.tokens import estimate_text_tokens
from transforms.settings import ChunkSettings
from transforms.types import Chunk, Locator, SourceObject, make_chunk_id

SEPARATORS = ("\n\n", "\n", ". ", " ")
HEAD_BYTES = 4096  # enough to tell UTF-16 without a BOM from binary
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes) -> str:
    """UTF-8 (or a BOM-declared UTF-16/32) to str; anything else is a ChunkingError."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ChunkingError(
                    "undecodable_text", f"declares {encoding} by its BOM but is not: {exc.reason}"
                ) from None
    utf16 = utf16_without_bom(data[:HEAD_BYTES])
    if utf16:
        raise ChunkingError(
            "undecodable_text",
            f"looks like {utf16.upper()} without a byte-order mark "
            "(fix: convert the file to UTF-8, or add a UTF-16 BOM)",
        )
    if b"\x00" in data:
        raise ChunkingError(
            "binary_content", f"contains NUL bytes (first at offset {data.index(0)}): not text"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ChunkingError(
            "undecodable_text",
            f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            "(fix: convert the file to UTF-8, or add a UTF-16 BOM)",
        ) from None


def _utf8_len(text: str, start: int, end: int) -> int:
    return len(text[start:end].encode("utf-8"))


def _hard_cut(text: str, start: int, end: int, max_chars: int, max_bytes: int) -> int:
    """Furthest cut after ``start`` within both the char and the byte bound."""
    used = 0
    limit = min(end, start + max_chars)
    for pos in range(start, limit):
        used += len(text[pos].encode("utf-8"))
        if used > max_bytes:
            return max(pos, start + 1)
    return limit


def split_spans(
    text: str, start: int, end: int, max_chars: int, max_bytes: int, seps=SEPARATORS
) -> Iterator[tuple[int, int]]:
    """Spans covering [start, end) in order, each within both bounds, cut at the
    coarsest separator that works (separators stay with the preceding span)."""
    if end - start <= max_chars and _utf8_len(text, start, end) <= max_bytes:
        yield start, end
        return
    for i, sep in enumerate(seps):
        if text.find(sep, start, end) < 0:
            continue
        pos = start
        while pos < end:
            found = text.find(sep, pos, end)
            cut = end if found < 0 else found + len(sep)
            yield from split_spans(text, pos, cut, max_chars, max_bytes, seps[i + 1 :])
            pos = cut
        return
    pos = start
    while pos < end:
        cut = _hard_cut(text, pos, end, max_chars, max_bytes)
        yield pos, cut
        pos = cut


def plan_chunks(
    text: str, target_chars: int, overlap_chars: int, max_bytes: int
) -> list[tuple[int, int]]:
    """Greedy packing of boundary-aligned spans into chunks, then word-aligned overlap.

    Every returned span satisfies ``utf8_len <= max_bytes``; together they cover the text.
    """
    if max_bytes < 4:
        raise ValueError(f"text byte budget {max_bytes} cannot hold one character")
    body_chars = max(1, target_chars - overlap_chars)
    chunks: list[tuple[int, int]] = []
    chunk_bytes = 0
    for s, e in split_spans(text, 0, len(text), body_chars, max_bytes):
        piece_bytes = _utf8_len(text, s, e)
        if chunks:
            cs, _ = chunks[-1]
            if e - cs <= body_chars and chunk_bytes + piece_bytes <= max_bytes:
                chunks[-1] = (cs, e)
                chunk_bytes += piece_bytes
                continue
        chunks.append((s, e))
        chunk_bytes = piece_bytes
    if overlap_chars <= 0:
        return chunks
    overlapped = [chunks[0]]
    for s, e in chunks[1:]:
        start = max(0, s - overlap_chars)
        space = text.find(" ", start, s)
        if space >= 0:
            start = space + 1
        if _utf8_len(text, start, e) > max_bytes:
            start = s
        overlapped.append((start, e))
    return overlapped


def title_for(source: SourceObject, settings: ChunkSettings) -> str | None:
    if not settings.title_from_filename:
        return None
    stem = os.path.splitext(os.path.basename(source.uri.rstrip("/")))[0]
    return stem.replace("_", " ").replace("-", " ")


def check_text_size(size: int, settings: ChunkSettings) -> None:
    """Refuse a text over ``text_max_file_bytes`` (it is read whole): call it with the
    listed size before reading, so a huge file never enters memory."""
    if size > settings.text_max_file_bytes:
        raise ChunkingError(
            "too_large", f"{size} bytes exceeds text_max_file_bytes={settings.text_max_file_bytes}"
        )


def chunk_text(source: SourceObject, data: bytes, settings: ChunkSettings) -> Iterator[Chunk]:
    """Yield the text chunks of one document. Whitespace-only text yields nothing."""
    check_text_size(len(data), settings)
    text = decode_text(data)
    if not text.strip():
        return
    prefix = document_prefix(title_for(source, settings))
    budget = settings.limits.text_byte_budget - len(prefix.encode("utf-8"))
    version = settings.version()
    for start, end in plan_chunks(
        text, settings.text_target_chars, settings.text_overlap_chars, budget
    ):
        body = text[start:end]
        if not body.strip():
            continue
        locator = Locator("chars", float(start), float(end))
        request_text = prefix + body
        yield Chunk(
            chunk_id=make_chunk_id(source.uri, source.generation, "text", locator, version),
            source_uri=source.uri,
            source_generation=source.generation,
            modality="text",
            mime_type="text/plain",
            locator=locator,
            parts=({"text": request_text},),
            task="RETRIEVAL_DOCUMENT",
            est_tokens=estimate_text_tokens(request_text),
        )
