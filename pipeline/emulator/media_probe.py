"""Measure and decode audio/video request bytes for the emulator's featurisers.

Two steps, both independent of the pipeline's own media code (``transforms/media``), so
"the emulator accepted it" is evidence of its own:

1. ``measure()``: the container's sample tables, parsed in Python (``containers.py``):
   per-stream packet spans (earliest presentation time to latest end, pre-roll included,
   the way a strict service measures them; container headers can claim anything) and the
   first video stream's keyframe times. Nothing is decoded, no ffmpeg runs.
2. ``decode()``: one run of the emulator's own decoder, the ffmpeg binary bundled in the
   ``imageio-ffmpeg`` wheel (never ``PATH`` nor the pipeline's configured binary): 16 kHz
   mono ``s16le`` PCM of the audio track and a few evenly spaced frames scaled to 32x32
   RGB (``fps=N/duration``, area averaging). With dense keyframes only keyframes are
   decoded (``-skip_frame nokey``), so a long high-resolution clip costs a fraction of a
   full decode.

Callers check limits between the two, so an over-long file is rejected without decoding.
Failures raise ``MediaError`` with a one-line reason (temporary paths removed).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache

import ffmpeg
import numpy as np

from pipeline.emulator.containers import ContainerError, parse

SAMPLE_RATE = 16_000
FRAME_SIDE = 32
TIMEOUT_SECONDS = 60.0

# A name suffix helps the decoder's probe with headerless MP3.
_SUFFIXES = {
    "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/mpeg3": ".mp3", "audio/x-mp3": ".mp3",
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/vnd.wave": ".wav",
    "audio/mp4": ".m4a", "audio/m4a": ".m4a", "audio/x-m4a": ".m4a",
    "video/mp4": ".mp4", "video/quicktime": ".mov", "video/mov": ".mov",
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


@lru_cache(maxsize=1)
def decoder() -> str:
    """The emulator's decoder: the ffmpeg binary of the imageio-ffmpeg wheel."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class MediaFile:
    """Request bytes in a temporary file for ffmpeg; use as a context manager."""

    def __init__(self, data: bytes, mime_type: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self._data = data
        self._suffix = _SUFFIXES.get(mime_type.split(";")[0].strip().lower(), ".bin")
        self._timeout = timeout
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

    def measure(self) -> Streams:
        """Packet spans from the container's index (nothing decoded); raises ``MediaError``
        without audio or video."""
        try:
            container = parse(self._data)
        except ContainerError as exc:
            raise MediaError(str(exc)) from None
        video, audio = container.first("video"), container.first("audio")
        if video is None and audio is None:
            raise MediaError("no audio or video packets found")
        spans = [t for t in (video, audio) if t is not None]
        return Streams(
            has_video=video is not None,
            has_audio=audio is not None,
            video_seconds=video.seconds if video else 0.0,
            audio_seconds=audio.seconds if audio else 0.0,
            span_seconds=max(t.end for t in spans) - min(t.start for t in spans),
            keyframes=video.keyframes if video else (),
        )

    def _run(self, stream) -> None:
        """Run an ffmpeg-python graph with the emulator's decoder; ``MediaError`` on failure."""
        args = stream.global_args("-hide_banner", "-nostdin", "-nostats", "-v", "error") \
            .compile(cmd=decoder(), overwrite_output=True)
        try:
            proc = subprocess.run(args, capture_output=True, timeout=self._timeout)
        except subprocess.TimeoutExpired:
            raise MediaError("decoding timed out") from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
            reason = "; ".join(lines[-2:]) or f"the decoder exited with {proc.returncode}"
            for noise in (_url(self.path), self.path, self._dir or "\0"):
                reason = reason.replace(noise, "input")
            raise MediaError(reason)

    def decode(self, *, audio: bool, frames: int = 0, video_seconds: float = 0.0,
               keyframes_only: bool = False) -> Decoded:
        """Audio as 16 kHz mono PCM and/or ``frames`` evenly spaced 32x32 RGB frames."""
        assert self._dir is not None, "use MediaFile as a context manager"
        options = {"skip_frame": "nokey"} if keyframes_only and frames else {}
        inp = ffmpeg.input(_url(self.path), **options)
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
        self._run(ffmpeg.merge_outputs(*outputs))
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


def _url(path: str) -> str:
    """``file:`` URL, so a name with ``:`` or a leading ``-`` is never a protocol or flag."""
    return "file:" + os.path.abspath(path)


def _read(path: str, dtype) -> np.ndarray:
    """An output file's contents (ffmpeg may not create a file it wrote nothing to)."""
    try:
        return np.fromfile(path, dtype=dtype)
    except FileNotFoundError:
        return np.zeros(0, dtype=dtype)
