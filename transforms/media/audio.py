"""Audio → chunks of at most ``limits.audio_seconds``, as MP3 or WAV.

MP3 and 16-bit WAV are cut by stream copy (every audio packet is a keyframe, so cuts are
exact and ~1000× realtime) unless a chunk would exceed the byte cap; everything else
(FLAC, Ogg/Vorbis, Opus, AAC/M4A, the audio track of a video) is transcoded to MP3 128k
in the same single pass, ~100× realtime.
"""

from __future__ import annotations

import tempfile
from typing import Iterator

from transforms.chunk_errors import UNSUPPORTED_TYPE, ChunkingError
from transforms.media.chunk_builder import media_chunk, read_file
from transforms.media.ffmpeg_tools import FfmpegTool, MediaInfo, StreamInfo
from transforms.media.timed_media import (
    CutSpec,
    cut_windows,
    plan_windows,
    probe_media,
    scan_with_coverage,
)
from transforms.types import Chunk, SourceObject

# (container, codec) pairs passed by stream copy → (segment muxer, chunk mime type).
COPY_FORMATS = {("mp3", "mp3"): ("mp3", "audio/mp3"), ("wav", "pcm_s16le"): ("wav", "audio/wav")}
MP3_MIME = "audio/mp3"
MP3_BITRATES = ("128k", "64k")  # re-cut ladder: an offender is re-encoded at these in turn
MAX_MP3_SAMPLE_RATE = 48000


def _mp3_args(audio: StreamInfo, bitrate: str) -> dict:
    args = {"c:a": "libmp3lame", "b:a": bitrate, "ac": min(audio.channels or 2, 2)}
    if audio.sample_rate > MAX_MP3_SAMPLE_RATE:
        args["ar"] = MAX_MP3_SAMPLE_RATE
    return args


def _copy_format(info: MediaInfo, audio: StreamInfo, target: float, max_bytes: int):
    """Segment format and mime for stream copy, or ``None`` when the audio must be transcoded."""
    fmt = COPY_FORMATS.get((info.format_name, audio.codec))
    if fmt is None:
        return None
    bytes_per_chunk = (audio.bitrate_kbps or info.bitrate_kbps) * 1000 / 8 * target
    return fmt if bytes_per_chunk <= max_bytes else None


def chunk_audio(source: SourceObject, local_path: str, settings) -> Iterator[Chunk]:
    """Yield balanced audio chunks of ``source``'s first audio track (video files too)."""
    tool = FfmpegTool.from_settings(settings)
    info, scanned = probe_media(tool, local_path)
    audio = info.audio
    if audio is None:
        raise ChunkingError(UNSUPPORTED_TYPE, f"no audio stream in this {info.format_name} file")
    limits = settings.limits
    target = limits.audio_seconds - limits.duration_margin_seconds
    scan = scan_with_coverage(scanned, info, settings, source.uri)
    copy = _copy_format(info, audio, target, settings.inline_max_bytes)
    segment_format, mime = copy or ("mp3", MP3_MIME)
    spec = CutSpec(
        streams=("a:0",),
        output_args={"c:a": "copy"} if copy else _mp3_args(audio, MP3_BITRATES[0]),
        segment_format=segment_format,
        max_seconds=limits.audio_seconds,
        max_bytes=settings.inline_max_bytes,
        # A re-cut always lands in the muxer of the plan, so it stays MP3 or WAV as planned.
        recut_ladder=(
            tuple(_mp3_args(audio, b) for b in MP3_BITRATES)
            if segment_format == "mp3"
            else ({"c:a": "pcm_s16le"},)
        ),
    )
    windows = plan_windows(scan.end_of(("audio",)), target)
    with tempfile.TemporaryDirectory(prefix="embedpipe-audio-") as work:
        for window, path in cut_windows(tool, local_path, windows, (), spec, work):
            yield media_chunk(source, settings, "audio", mime, window.locator(), read_file(path))
