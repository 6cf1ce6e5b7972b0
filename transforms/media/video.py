"""Video → MP4 chunks of at most ``limits.video_seconds`` (``video_with_audio_seconds`` with sound).

H.264, H.265, AV1 and VP9 (8-bit 4:2:0) are stream-copied into MP4, cut on keyframes
planned so every window fits the target (limit − margin); only the audio is re-encoded to
AAC when it is something else. When a keyframe gap exceeds the target, or the codec must
not pass (MPEG-4 Part 2, WMV, ProRes, 10-bit, …), the whole file is first transcoded once
to H.264/AAC at most 720p with keyframes forced at the planned boundaries, then cut the
same way. Copy runs at hundreds of media-seconds per second; transcoding at ~5–30×.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator

import ffmpeg

from transforms.chunk_errors import UNSUPPORTED_TYPE, ChunkingError
from transforms.media.audio import chunk_audio
from transforms.media.chunk_builder import media_chunk, read_file
from transforms.media.ffmpeg_tools import EDGE_MAX_REORDER, FfmpegTool, StreamInfo, input_path
from transforms.media.timed_media import (
    CutSpec,
    cut_windows,
    ffmpeg_failures_as_chunking_errors,
    plan_windows,
    probe_media,
    scan_with_coverage,
    window_boundaries,
)
from transforms.types import Chunk, SourceObject

MIME = "video/mp4"
PASS_CODECS = frozenset({"h264", "hevc", "av1", "vp9"})
PASS_PIX_FMTS = frozenset({"yuv420p", "yuvj420p"})
MAX_SHORT_SIDE = 720
X264 = {"c:v": "libx264", "preset": "veryfast", "pix_fmt": "yuv420p"}
TRANSCODE_CRF = 26
# Offenders are re-encoded at these (fraction of the <= 720p size, crf, audio bitrate) in
# turn until they fit: from a 1080p source 720p, 480p, 360p, 240p.
RECUT_STEPS = ((1.0, 26, "128k"), (0.67, 30, "96k"), (0.5, 32, "64k"), (0.33, 34, "48k"))
FASTSTART = "+faststart"  # moov atom first, so a reader need not seek to the end


def _scale(fraction: float = 1.0) -> str:
    """Shorter side <= 720 px (after autorotation), times ``fraction``; even dimensions,
    at least 2 px (H.264 4:2:0 needs even sides: a 1×1 video becomes 2×2, not 0×0)."""
    factor = f"{fraction}*min(1,{MAX_SHORT_SIDE}/min(iw,ih))"
    return f"scale=w='max(2,2*trunc(iw*{factor}/2))':h='max(2,2*trunc(ih*{factor}/2))'"


def _audio_args(audio: StreamInfo | None, bitrate: str = "128k") -> dict:
    if audio is None:
        return {}
    return {"c:a": "aac", "b:a": bitrate, "ac": min(audio.channels or 2, 2)}


def _passes(video: StreamInfo) -> bool:
    return video.codec in PASS_CODECS and video.pix_fmt in PASS_PIX_FMTS


def _transcode(
    tool: FfmpegTool, path: str, audio: StreamInfo | None, keyframe_times, duration: float, out: str
) -> None:
    """One pass to H.264/AAC MP4 with keyframes exactly where the plan cuts."""
    inp = ffmpeg.input(input_path(path))
    streams = [inp["V:0"]] + ([inp["a:0"]] if audio else [])
    options = {
        **X264,
        "crf": TRANSCODE_CRF,
        "vf": _scale(),
        "force_key_frames": ",".join(f"{t:.6f}" for t in keyframe_times),
        "movflags": FASTSTART,
        **_audio_args(audio),
    }
    with ffmpeg_failures_as_chunking_errors("transcoding failed"):
        tool.run(ffmpeg.output(*streams, out, **options), timeout=tool.timeout + duration)


def _copy_args(video: StreamInfo, audio: StreamInfo | None) -> dict:
    """Cut options for a passing source: video copied, audio copied only if AAC."""
    args = {"c:v": "copy"}
    if video.codec == "hevc":
        args["tag:v"] = "hvc1"  # the MP4 sample entry players (and Apple) expect
    if audio is not None:
        args.update({"c:a": "copy"} if audio.codec == "aac" else _audio_args(audio))
    return args


def _spec(
    copy_args: dict, audio: StreamInfo | None, limit: float, settings, edge_scans: bool
) -> CutSpec:
    return CutSpec(
        streams=("V:0", "a:0") if audio else ("V:0",),
        output_args={**copy_args, "segment_format_options": f"movflags={FASTSTART}"},
        segment_format="mp4",
        max_seconds=limit,
        max_bytes=settings.inline_max_bytes,
        edge_scans=edge_scans,
        recut_ladder=tuple(
            {
                **X264,
                "crf": crf,
                "vf": _scale(fraction),
                "movflags": FASTSTART,
                **_audio_args(audio, kbps),
            }
            for fraction, crf, kbps in RECUT_STEPS
        ),
    )


def chunk_video(source: SourceObject, local_path: str, settings) -> Iterator[Chunk]:
    """Yield MP4 chunks of ``source``; audio-only files are handed to ``chunk_audio``."""
    tool = FfmpegTool.from_settings(settings)
    info, scanned = probe_media(tool, local_path)
    if info.video is None:
        if info.audio is None:
            raise ChunkingError(
                UNSUPPORTED_TYPE, f"no video or audio stream in this {info.format_name} file"
            )
        yield from chunk_audio(source, local_path, settings)
        return
    audio = info.audio if settings.video_keep_audio else None
    limits = settings.limits
    limit = limits.video_with_audio_seconds if audio else limits.video_seconds
    target = limit - limits.duration_margin_seconds
    overlap = settings.video_overlap_seconds
    scan = scan_with_coverage(scanned, info, settings, source.uri)
    duration = scan.end_of(("video", "audio") if audio else ("video",))
    windows = (
        plan_windows(duration, target, scan.keyframes, overlap) if _passes(info.video) else None
    )
    with tempfile.TemporaryDirectory(prefix="embedpipe-video-") as work:
        if windows is None:
            windows = plan_windows(duration, target, None, overlap)
            cut_points = window_boundaries(windows)
            src = os.path.join(work, "normalized.mp4")
            _transcode(tool, local_path, audio, cut_points, duration, src)
            copy_args = {"c:v": "copy", **({"c:a": "copy"} if audio else {})}
            edge_scans = False  # the encoder's reordering was never scanned
        else:
            src, cut_points = local_path, scan.keyframes
            copy_args = _copy_args(info.video, audio)
            edge_scans = scan.video_reorder <= EDGE_MAX_REORDER
        spec = _spec(copy_args, audio, limit, settings, edge_scans)
        for window, path in cut_windows(tool, src, windows, cut_points, spec, work):
            yield media_chunk(source, settings, "video", MIME, window.locator(), read_file(path))
    if settings.extract_audio_from_video and info.audio is not None:
        yield from chunk_audio(source, local_path, settings)
