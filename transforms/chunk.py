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
        chunks, errors = chunk_source(media, settings)
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


def route(source: SourceObject, settings: ChunkSettings) -> Iterator[Chunk | ChunkingError]:
    """Stream the chunks of one object from its modality's chunker, one at a time (a long
    video is never held in memory whole). Per-part problems (a records row) are yielded
    as ChunkingErrors; a problem with the whole object is raised."""
    named_as = mimetypes.guess_type(source.uri)[0] or ""
    named_media = named_as.split("/")[0] in ("image", "audio", "video") or named_as == "application/pdf"
    if source.detected_type == "empty":
        if named_media:
            raise ChunkingError("corrupt_media", f"zero bytes, but named like {named_as}")
        return
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
    yield from chunker(source, settings)


def chunk_source(source: SourceObject, settings: ChunkSettings):
    """(chunks, per-part errors) of one small object, for queries and records media."""
    chunks, errors = [], []
    for item in route(source, settings):
        (errors if isinstance(item, ChunkingError) else chunks).append(item)
    return chunks, errors


class ChunkDoFn(beam.DoFn):
    """Thin wrapper around ``route`` with dead-letter routing and counters.

    Chunks are emitted as they are cut. If an object fails part-way (a video window
    that cannot be made to fit), the chunks already cut are kept and the rest of the
    object becomes a dead letter saying where it stopped."""

    def __init__(self, settings: ChunkSettings):
        self._settings = settings
        self._chunks = Metrics.counter("embedpipe", "chunks")
        self._tokens = Metrics.counter("embedpipe", "chunk_est_tokens")
        self._dead = Metrics.counter("embedpipe", "deadletters_chunk")

    def process(self, source: SourceObject):
        emitted = part_errors = 0
        failure = None
        try:
            for item in route(source, self._settings):
                if isinstance(item, ChunkingError):
                    part_errors += 1
                    yield self._dead_letter(source, item.error_class, item.message)
                    continue
                emitted += 1
                self._chunks.inc()
                self._tokens.inc(item.est_tokens)
                yield item
        except ChunkingError as exc:
            failure = (exc.error_class, exc.message)
        except (OSError, ValueError, RuntimeError, MemoryError) as exc:
            _LOG.warning("chunking %s failed: %s", source.uri, exc)
            failure = (type(exc).__name__, str(exc))
        if failure is not None:
            where = f" (after {emitted} chunks)" if emitted else ""
            yield self._dead_letter(source, failure[0], failure[1] + where)
        if emitted:
            status = "chunked"
        else:
            status = "dead" if failure or part_errors else "empty"
        yield beam.pvalue.TaggedOutput(
            OUTCOMES,
            ObjectOutcome(
                source.uri, source.generation, source.detected_type, status,
                emitted, source.size_bytes,
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
        return beam.pvalue.TaggedOutput(DEADLETTERS, self._letter(source, error_class, message))


class ChunkSources(beam.PTransform):
    """SourceObjects → Chunks, with tagged ``deadletters`` and ``outcomes``."""

    def __init__(self, settings: ChunkSettings):
        super().__init__()
        self._settings = settings

    def expand(self, sources):
        return sources | "Chunk by modality" >> beam.ParDo(
            ChunkDoFn(self._settings)
        ).with_outputs(DEADLETTERS, OUTCOMES, main="chunks")
