"""Settings the Beam stages need, as plain frozen dataclasses.

``pipeline/config.py`` loads and validates YAML into these; transforms never read
config files themselves, so the same objects pickle onto Dataflow workers.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelLimits:
    """Per-request limits of one model (``configs/limits/<model>.yaml``)."""

    model: str
    text_tokens: int
    token_reserve: float
    images_per_request: int
    image_mime_types: tuple[str, ...]
    video_seconds: float
    video_with_audio_seconds: float
    audio_seconds: float
    duration_margin_seconds: float
    pdf_pages: int
    max_parts_media: int
    dimensionality_min: int
    dimensionality_max: int
    modalities: tuple[str, ...]
    batch_requests_per_sync_call: int
    input_file_bytes: int
    inline_request_bytes: int
    concurrent_batch_jobs: int
    job_expiry_hours: float

    @property
    def text_byte_budget(self) -> int:
        """UTF-8 bytes per text chunk that provably stay under the token limit.

        Gemma-family tokenizers never emit more tokens than UTF-8 bytes (byte-fallback
        BPE: every token consumes at least one byte), so bytes <= budget proves
        tokens <= budget (research media-chunking.md §6).
        """
        return int(self.text_tokens * (1.0 - self.token_reserve))


@dataclass(frozen=True)
class ChunkSettings:
    """Everything a chunker needs; its hash is part of every chunk id."""

    limits: ModelLimits
    text_target_chars: int = 2000
    text_overlap_chars: int = 200
    text_max_file_bytes: int = 200_000_000
    image_max_side: int = 3072
    image_max_pixels: int = 89_478_485
    inline_max_bytes: int = 14_000_000
    video_overlap_seconds: float = 0.0
    video_keep_audio: bool = True
    extract_audio_from_video: bool = False
    video_min_coverage: float = 0.98
    truncated_media: str = "deadletter"  # deadletter | warn
    pdf_max_pages: int = 5000
    ffmpeg_path: str | None = None
    ffmpeg_timeout_seconds: float = 600.0
    title_from_filename: bool = True
    chunker_version: str = "1"
    # Trees records references may point into (resolved local paths, gs:// prefixes):
    # the source roots plus ``allowed_roots``. Empty means unchecked (library use).
    source_roots: tuple[str, ...] = ()

    def version(self) -> str:
        """Short hash of every setting that changes what chunks come out."""
        payload = asdict(self)
        for how_not_what in ("ffmpeg_path", "ffmpeg_timeout_seconds", "source_roots"):
            payload.pop(how_not_what)
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return self.chunker_version + "-" + hashlib.sha256(blob).hexdigest()[:12]
