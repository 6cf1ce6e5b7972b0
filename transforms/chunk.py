"""Chunk: route each SourceObject to its modality's chunker; bad input becomes a dead
letter and the run goes on.

Outputs (tagged): main = Chunk, ``deadletters`` = DeadLetter, ``outcomes`` = one
ObjectOutcome per object, so the manifest can prove nothing was lost. An object listing
could not (or would not) open is a dead letter of stage ``list``; a special file or a
symlinked folder is ``skipped`` with its reason; neither is ever opened here.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import mimetypes
import os
import re
import tempfile
from typing import Callable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import fs
from transforms.chunk_errors import READ_ERRORS, ChunkingError
from transforms.chunk_records import chunk_records
from transforms.chunk_text import check_text_size, chunk_text
from transforms.list_sources import SKIPPED_TYPES, describe_reference, read_failure, reference_roots
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
    check_text_size(source.size_bytes, settings)
    return chunk_text(source, fs.read_bytes(source.uri), settings)


_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}\Z")


def _safe_suffix(uri: str) -> str:
    suffix = os.path.splitext(uri)[1]
    return suffix if _SAFE_SUFFIX.match(suffix) else ""


@contextlib.contextmanager
def _plain_name(path: str, suffix: str) -> Iterator[str]:
    """``path`` under a fixed ASCII name (a symlink in a private temp folder), so a file
    name never reaches a media tool: a name holding a newline and a fake ``Duration:``
    line once changed what ffmpeg's printed header said."""
    with tempfile.TemporaryDirectory(prefix="embedpipe-in-") as tmp:
        alias = os.path.join(tmp, "input" + suffix)
        os.symlink(os.path.abspath(path), alias)
        yield alias


def _from_local_file(chunker):
    """Media chunkers need a file path (ffmpeg, pypdf): gs:// objects go to a temp file
    that is removed once the chunker is done; every path gets a plain name."""

    def run(source: SourceObject, settings: ChunkSettings) -> Iterator[Chunk]:
        suffix = _safe_suffix(source.uri)
        with fs.local_copy(source.uri, suffix=suffix) as local, _plain_name(local, suffix) as plain:
            yield from chunker(source, plain, settings)

    return run


def _records(source: SourceObject, settings: ChunkSettings):
    def chunk_media(media: SourceObject) -> list[Chunk]:
        chunks, errors = chunk_source(media, settings)
        if errors:
            raise errors[0]
        return chunks

    describe = functools.partial(
        describe_reference, roots=reference_roots(source.uri, settings.source_roots)
    )
    with fs.local_copy(source.uri, suffix=_safe_suffix(source.uri)) as local:
        yield from chunk_records(source, local, settings, chunk_media, describe)


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
    if source.problem is not None:  # listing could not (or would not) open it
        raise ChunkingError(source.problem, source.problem_message)
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
        if source.detected_type in SKIPPED_TYPES:
            yield self._outcome(source, "skipped", reason=source.problem)
            return
        emitted = dead = tokens = 0
        failure = None
        try:
            for item in route(source, self._settings):
                if isinstance(item, ChunkingError):
                    dead += 1
                    yield self._dead_letter(source, item.error_class, item.message)
                    continue
                emitted += 1
                tokens += item.est_tokens
                yield item
        except ChunkingError as exc:
            failure = (exc.error_class, exc.message)
        except READ_ERRORS as exc:
            failure = read_failure(source.uri, exc)
        except (ValueError, RuntimeError, MemoryError) as exc:
            _LOG.warning("chunking %s failed: %s", source.uri, exc)
            failure = (type(exc).__name__, str(exc))
        if emitted:  # once per object, not per chunk: each update goes through Beam's tracker
            self._chunks.inc(emitted)
            self._tokens.inc(tokens)
        if failure is not None:
            dead += 1
            where = f" (after {emitted} chunks)" if emitted else ""
            yield self._dead_letter(source, failure[0], failure[1] + where)
        if emitted:
            status = "chunked"
        else:
            status = "dead" if dead else "empty"
        yield self._outcome(source, status, emitted, dead)

    @staticmethod
    def _outcome(source: SourceObject, status: str, chunks: int = 0, dead: int = 0,
                 reason: str | None = None):
        return beam.pvalue.TaggedOutput(
            OUTCOMES,
            ObjectOutcome(source.uri, source.generation, source.detected_type, status,
                          chunks, source.size_bytes, dead, reason),
        )

    @staticmethod
    def _letter(source: SourceObject, error_class: str, message: str) -> DeadLetter:
        return DeadLetter(
            source_uri=source.uri,
            stage="list" if source.problem else "chunk",
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
