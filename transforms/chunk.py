"""Chunk: route each SourceObject to its modality's chunker; bad input becomes a dead
letter and the run goes on.

Outputs (tagged): main = Chunk, ``deadletters`` = DeadLetter, ``outcomes`` = one
ObjectOutcome per object, so the manifest can prove nothing was lost.
"""
from __future__ import annotations

import logging
import mimetypes
import os
from typing import Callable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import fs
from transforms.chunk_errors import ChunkingError
from transforms.chunk_records import chunk_records
from transforms.chunk_text import chunk_text
from transforms.list_sources import describe, expand_pattern
from transforms.media.audio import chunk_audio
from transforms.media.image import chunk_image
from transforms.media.pdf import chunk_pdf
from transforms.media.video import chunk_video
from transforms.settings import ChunkSettings
from transforms.types import Chunk, DeadLetter, ObjectOutcome, SourceObject

DEADLETTERS = "deadletters"
OUTCOMES = "outcomes"
_LOG = logging.getLogger(__name__)


def _text(source: SourceObject, settings: ChunkSettings) -> Iterator[Chunk]:
    return chunk_text(source, fs.read_bytes(source.uri), settings)


def _from_local_file(chunker):
    """Media chunkers need a file path (ffmpeg, pypdf): gs:// objects go to a temp file
    that is removed once the chunker is done."""

    def run(source: SourceObject, settings: ChunkSettings) -> Iterator[Chunk]:
        suffix = os.path.splitext(source.uri)[1]
        with fs.local_copy(source.uri, suffix=suffix) as local:
            yield from chunker(source, local, settings)

    return run


def _describe_reference(uri: str) -> SourceObject:
    listed = next(expand_pattern(uri), None)
    if listed is None:
        raise FileNotFoundError(f"media {uri!r} does not exist")
    return describe(listed)


def _records(source: SourceObject, settings: ChunkSettings):
    def chunk_media(media: SourceObject) -> list[Chunk]:
        chunks, errors, _status = chunk_source(media, settings)
        if errors:
            raise errors[0]
        return chunks

    with fs.local_copy(source.uri, suffix=os.path.splitext(source.uri)[1]) as local:
        yield from chunk_records(source, local, settings, chunk_media, _describe_reference)


# detected_type -> (modality, chunker). A chunker yields Chunks, and may also yield
# ChunkingErrors for parts of the object (records rows) while the rest goes on.
CHUNKERS: dict[str, tuple[str, Callable[[SourceObject, ChunkSettings], Iterator[Chunk]]]] = {
    "text": ("text", _text),
    "pdf": ("pdf", _from_local_file(chunk_pdf)),
    "image": ("image", _from_local_file(chunk_image)),
    "audio": ("audio", _from_local_file(chunk_audio)),
    "video": ("video", _from_local_file(chunk_video)),
    "records": ("records", _records),
}


def chunk_source(source: SourceObject, settings: ChunkSettings):
    """Pure routing: (chunks, per-part errors, status) or raises ChunkingError for the
    whole object."""
    named_as = mimetypes.guess_type(source.uri)[0] or ""
    named_media = named_as.split("/")[0] in ("image", "audio", "video") or named_as == "application/pdf"
    if source.detected_type == "empty":
        if named_media:
            raise ChunkingError("corrupt_media", f"zero bytes, but named like {named_as}")
        return [], [], "empty"
    if source.detected_type == "text" and named_media:
        # Type comes from content, but text in a file named like media is a broken
        # export or a mix-up, not a document anyone meant to embed.
        raise ChunkingError("content_mismatch", f"named like {named_as} but the content is text")
    entry = CHUNKERS.get(source.detected_type)
    if entry is None:
        raise ChunkingError(
            "unsupported_type",
            f"detected type {source.detected_type!r}"
            + (f" ({source.mime_type})" if source.mime_type else "")
            + " is not supported",
        )
    modality, chunker = entry
    # records are checked part by part: each referenced object goes through its own chunker
    if modality != "records" and modality not in settings.limits.modalities:
        raise ChunkingError(
            "unsupported_modality",
            f"model {settings.limits.model} does not embed {modality} inputs",
        )
    chunks, errors = [], []
    for item in chunker(source, settings):
        (errors if isinstance(item, ChunkingError) else chunks).append(item)
    if errors and not chunks:
        return [], errors, "dead"
    return chunks, errors, ("chunked" if chunks else "empty")


class ChunkDoFn(beam.DoFn):
    """Thin wrapper around ``chunk_source`` with dead-letter routing and counters."""

    def __init__(self, settings: ChunkSettings):
        self._settings = settings
        self._chunks = Metrics.counter("embedpipe", "chunks")
        self._tokens = Metrics.counter("embedpipe", "chunk_est_tokens")
        self._dead = Metrics.counter("embedpipe", "deadletters_chunk")

    def process(self, source: SourceObject):
        try:
            chunks, errors, status = chunk_source(source, self._settings)
        except ChunkingError as exc:
            yield from self._dead_letter(source, exc.error_class, exc.message)
            return
        except (OSError, ValueError, RuntimeError, MemoryError) as exc:
            _LOG.warning("chunking %s failed: %s", source.uri, exc)
            yield from self._dead_letter(source, type(exc).__name__, str(exc))
            return
        for chunk in chunks:
            self._chunks.inc()
            self._tokens.inc(chunk.est_tokens)
            yield chunk
        for error in errors:
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(DEADLETTERS, self._letter(source, error.error_class, error.message))
        yield beam.pvalue.TaggedOutput(
            OUTCOMES,
            ObjectOutcome(
                source.uri, source.generation, source.detected_type, status,
                len(chunks), source.size_bytes,
            ),
        )

    @staticmethod
    def _letter(source: SourceObject, error_class: str, message: str) -> DeadLetter:
        return DeadLetter(
            source_uri=source.uri,
            stage="chunk",
            error_class=error_class,
            message=f"{os.path.basename(source.uri)}: {message}",
            source_generation=source.generation,
        )

    def _dead_letter(self, source: SourceObject, error_class: str, message: str):
        self._dead.inc()
        yield beam.pvalue.TaggedOutput(DEADLETTERS, self._letter(source, error_class, message))
        yield beam.pvalue.TaggedOutput(
            OUTCOMES,
            ObjectOutcome(
                source.uri, source.generation, source.detected_type, "dead", 0, source.size_bytes
            ),
        )


class ChunkSources(beam.PTransform):
    """SourceObjects → Chunks, with tagged ``deadletters`` and ``outcomes``."""

    def __init__(self, settings: ChunkSettings):
        super().__init__()
        self._settings = settings

    def expand(self, sources):
        return sources | "Chunk by modality" >> beam.ParDo(
            ChunkDoFn(self._settings)
        ).with_outputs(DEADLETTERS, OUTCOMES, main="chunks")
