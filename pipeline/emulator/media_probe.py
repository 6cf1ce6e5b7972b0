"""Decode audio/video request bytes with the bundled ffmpeg, for the emulator's featurisers.

The bytes go to a private temporary directory (removed on exit), then at most two ffmpeg
runs through ``transforms/media/ffmpeg_tools.py``:

1. ``measure()``: a stream-copy packet scan (``framecrc``, nothing decoded) of the first
   real video stream and the first audio stream. Durations are packet spans, earliest pts
   to latest pts + duration, the way a strict service measures them (container headers
   can claim anything); the first video stream's keyframe times come with it.
2. ``decode()``: one pass with up to two outputs, 16 kHz mono ``s16le`` PCM of the audio
   track and a few evenly spaced frames scaled to 32x32 RGB (``fps=N/duration``, area
   averaging). With dense keyframes only keyframes are decoded (``-skip_frame nokey``), so
   a long high-resolution clip costs a fraction of a full decode.

Callers check limits between the two, so an over-long file is rejected without decoding.
Failures raise ``MediaError`` with ffmpeg's own diagnosis (temporary paths removed).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import ffmpeg
import numpy as np

from transforms.media.ffmpeg_tools import FfmpegError, FfmpegTool, input_path, resolve_ffmpeg

SAMPLE_RATE = 16_000
FRAME_SIDE = 32
TIMEOUT_SECONDS = 60.0

# A name suffix helps ffmpeg's probe with headerless formats (ADTS AAC, raw MP3).
_SUFFIXES = {
    "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/mpeg3": ".mp3", "audio/x-mp3": ".mp3",
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/vnd.wave": ".wav",
    "audio/aac": ".aac", "audio/x-aac": ".aac", "audio/mp4": ".m4a", "audio/m4a": ".m4a",
    "audio/x-m4a": ".m4a", "audio/ogg": ".ogg", "audio/opus": ".opus", "audio/flac": ".flac",
    "audio/x-flac": ".flac", "audio/aiff": ".aiff", "audio/x-aiff": ".aiff", "audio/webm": ".webm",
    "video/mp4": ".mp4", "video/mpeg": ".mpg", "video/quicktime": ".mov", "video/mov": ".mov",
    "video/webm": ".webm", "video/x-matroska": ".mkv", "video/avi": ".avi",
    "video/x-msvideo": ".avi", "video/x-flv": ".flv", "video/3gpp": ".3gp", "video/mpegps": ".mpg",
    "video/wmv": ".wmv", "video/x-ms-wmv": ".wmv",
}


class MediaError(ValueError):
    """The bytes could not be scanned or decoded; ``str()`` is a one-line reason."""


@dataclass(frozen=True)
class Streams:
    """Packet-level facts of the first video and first audio stream."""

    has_video: bool
    has_audio: bool
    video_seconds: float  # packet span of the video stream (0.0 without one)
    audio_seconds: float  # packet span of the audio stream (0.0 without one)
    span_seconds: float  # over both streams: earliest start to latest end
    keyframes: tuple[float, ...]


@dataclass(frozen=True)
class Decoded:
    pcm: np.ndarray | None  # float32 mono samples in [-1, 1) at SAMPLE_RATE
    frames: np.ndarray | None  # uint8, (n, FRAME_SIDE, FRAME_SIDE, 3) RGB


class MediaFile:
    """Request bytes in a temporary file for ffmpeg; use as a context manager."""

    def __init__(self, data: bytes, mime_type: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self._data = data
        self._suffix = _SUFFIXES.get(mime_type.split(";")[0].strip().lower(), ".bin")
        self._tool = FfmpegTool(resolve_ffmpeg(None), timeout)
        self._dir: str | None = None
        self.path = ""

    def __enter__(self) -> "MediaFile":
        self._dir = tempfile.mkdtemp(prefix="embedpipe-emu-media-")
        self.path = os.path.join(self._dir, "input" + self._suffix)
        with open(self.path, "wb") as fh:
            fh.write(self._data)
        return self

    def __exit__(self, *exc) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _reason(self, err: FfmpegError) -> str:
        reason = err.reason()
        for noise in (input_path(self.path), self.path, self._dir or "\0"):
            reason = reason.replace(noise, "input")
        return "ffmpeg timed out" if err.timed_out else reason

    def measure(self) -> Streams:
        """Scan packets (no decoding); raises ``MediaError`` without audio or video."""
        if not self._data:
            raise MediaError("the file is empty")
        try:
            scan = self._tool.scan_packets(self.path, ["V:0?", "a:0?"])
        except FfmpegError as err:
            raise MediaError(self._reason(err)) from None
        spans = {s.kind: s for s in scan.streams if s.end > s.start}
        video, audio = spans.get("video"), spans.get("audio")
        if video is None and audio is None:
            raise MediaError("no audio or video packets found")
        return Streams(
            has_video=video is not None,
            has_audio=audio is not None,
            video_seconds=video.end - video.start if video else 0.0,
            audio_seconds=audio.end - audio.start if audio else 0.0,
            span_seconds=max(s.end for s in spans.values()) - min(s.start for s in spans.values()),
            keyframes=scan.keyframes if video else (),
        )

    def decode(self, *, audio: bool, frames: int = 0, video_seconds: float = 0.0,
               keyframes_only: bool = False) -> Decoded:
        """Audio as 16 kHz mono PCM and/or ``frames`` evenly spaced 32x32 RGB frames."""
        assert self._dir is not None, "use MediaFile as a context manager"
        options = {"skip_frame": "nokey"} if keyframes_only and frames else {}
        inp = ffmpeg.input(input_path(self.path), **options)
        pcm_path = os.path.join(self._dir, "audio.s16le")
        raw_path = os.path.join(self._dir, "frames.rgb")
        outputs = []
        if audio:
            outputs.append(inp["a:0"].output(pcm_path, f="s16le", acodec="pcm_s16le",
                                             ac=1, ar=SAMPLE_RATE))
        if frames:
            rate = frames / max(video_seconds, 1e-3)
            outputs.append(
                inp["V:0"].filter("fps", fps=f"{rate:.9g}")
                .filter("format", "rgb24")
                .filter("scale", FRAME_SIDE, FRAME_SIDE, flags="area")
                .output(raw_path, f="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
            )
        if not outputs:
            return Decoded(None, None)
        try:
            self._tool.run(ffmpeg.merge_outputs(*outputs))
        except FfmpegError as err:
            raise MediaError(self._reason(err)) from None
        if frames and keyframes_only and _read(raw_path, np.uint8).size == 0:
            # The decoder's notion of a keyframe can be stricter than the demuxer's flags
            # (e.g. recovery points without IDR): sample from a full decode instead.
            return self.decode(audio=audio, frames=frames, video_seconds=video_seconds)
        pcm = images = None
        if audio:
            samples = _read(pcm_path, np.dtype("<i2"))
            if samples.size == 0:
                raise MediaError("the audio stream decoded to no samples")
            pcm = samples.astype(np.float32) / 32768.0
        if frames:
            side = FRAME_SIDE * FRAME_SIDE * 3
            raw = _read(raw_path, np.uint8)
            if raw.size < side:
                raise MediaError("the video stream decoded to no frames")
            images = raw[: raw.size // side * side].reshape(-1, FRAME_SIDE, FRAME_SIDE, 3)
        return Decoded(pcm, images)


def _read(path: str, dtype) -> np.ndarray:
    """An output file's contents (ffmpeg may not create a file it wrote nothing to)."""
    try:
        return np.fromfile(path, dtype=dtype)
    except FileNotFoundError:
        return np.zeros(0, dtype=dtype)
