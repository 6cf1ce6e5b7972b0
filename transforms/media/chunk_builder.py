"""Build a media ``Chunk``: id, inline part and token estimate, the same for every modality."""

from __future__ import annotations

import math

import pybase64

from transforms.types import Chunk, Locator, SourceObject, make_chunk_id

# Tokens per unit (Google's published rates), keyed like ``tokens_per_unit`` in
# configs/pricing.yaml: per image, per PDF page, per second of audio or video.
TOKENS_PER_UNIT = {"image": 258, "pdf_page": 258, "audio_second": 32, "video_second": 263}
UNIT_KEY = {"image": "image", "pdf": "pdf_page", "audio": "audio_second", "video": "video_second"}


def estimate_tokens(modality: str, locator: Locator, tokens_per_unit=TOKENS_PER_UNIT) -> int:
    """Units in the locator (pages, seconds, or one image) times the per-unit rate."""
    units = {"pages": locator.end - locator.start + 1, "seconds": locator.end - locator.start}
    return math.ceil(tokens_per_unit[UNIT_KEY[modality]] * units.get(locator.unit, 1))


def inline_part(mime_type: str, data: bytes) -> dict:
    """A Gemini REST part with the bytes inline (snake_case, as the SDK sends it). The
    standard base64 alphabet with padding, straight into a ``str``: what
    ``base64.b64encode(data).decode()`` gives, ~15x as fast (it was a sixth of a video's
    chunking time)."""
    return {"inline_data": {"mime_type": mime_type, "data": pybase64.b64encode_as_string(data)}}


def media_chunk(
    source: SourceObject, settings, modality: str, mime_type: str, locator: Locator, data: bytes
) -> Chunk:
    return Chunk(
        chunk_id=make_chunk_id(
            source.uri, source.generation, modality, locator, settings.version()
        ),
        source_uri=source.uri,
        source_generation=source.generation,
        modality=modality,
        mime_type=mime_type,
        locator=locator,
        parts=(inline_part(mime_type, data),),
        est_tokens=estimate_tokens(modality, locator),
    )


def read_file(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
