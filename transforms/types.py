"""Small dataclass types that flow between the pipeline's stages.

Every element is a frozen dataclass so it pickles the same on any runner and cannot
be mutated by a later stage behind an earlier one's back.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

CHUNK_ID_HEX = 32


@dataclass(frozen=True)
class SourceObject:
    """One listed object. ``generation`` changes whenever the content may have changed."""

    uri: str
    size_bytes: int
    generation: str
    # text | pdf | image | audio | video | records | empty | unknown, or what listing found
    # instead of a usable object: special (FIFO, socket, device: skipped, never opened) and
    # unreadable (``problem`` says why; the Chunk stage dead-letters it, never opening it)
    detected_type: str
    mime_type: str | None = None
    content_hash: str | None = None
    problem: str | None = None  # error class or skip reason found while listing
    problem_message: str = ""


@dataclass(frozen=True)
class Locator:
    """Where in the source a chunk came from; ``unit`` is chars, pages, seconds or none."""

    unit: str = "none"
    start: float = 0.0
    end: float = 0.0

    def as_key(self) -> str:
        return f"{self.unit}:{self.start!r}:{self.end!r}"


def make_chunk_id(
    uri: str, generation: str, modality: str, locator: Locator, chunker_version: str
) -> str:
    """Content-addressed id: the same input gives the same id on any runner and rerun."""
    material = "\x1f".join([uri, generation, modality, locator.as_key(), chunker_version])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:CHUNK_ID_HEX]


@dataclass(frozen=True)
class Chunk:
    """One embeddable unit: becomes exactly one request line and one vector.

    ``parts`` are Gemini REST ``Part`` dicts (``{"text": ...}``,
    ``{"inline_data": {"mime_type": ..., "data": <base64>}}`` or
    ``{"file_data": {"mime_type": ..., "file_uri": ...}}``), already carrying any
    task prompt prefix.
    """

    chunk_id: str
    source_uri: str
    source_generation: str
    modality: str  # text | pdf | image | audio | video | records
    mime_type: str
    locator: Locator
    parts: tuple = field(default_factory=tuple)
    task: str = "RETRIEVAL_DOCUMENT"
    est_tokens: int = 0


@dataclass(frozen=True)
class DeadLetter:
    """An input or chunk that could not be embedded, and why."""

    source_uri: str
    stage: str
    error_class: str
    message: str
    attempts: int = 1
    chunk_id: str | None = None
    source_generation: str | None = None


@dataclass(frozen=True)
class ObjectOutcome:
    """What became of one listed object in the Chunk stage (feeds the manifest counts)."""

    uri: str
    generation: str
    detected_type: str
    status: str  # chunked | empty | dead | skipped (| unchanged | tombstone, from the diff)
    chunks: int = 0
    size_bytes: int = 0
    dead_letters: int = 0  # dead letters written for it: the object, or bad rows / its tail
    reason: str | None = None  # why it was skipped
