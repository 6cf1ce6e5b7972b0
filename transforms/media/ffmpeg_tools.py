"""ffmpeg with a wall-clock timeout, and probing without ffprobe.

Only ``ffmpeg`` is guaranteed (``imageio-ffmpeg`` ships no ffprobe), so probing uses two
ffmpeg runs: the input header it prints (duration, streams, codecs, size) and a packet scan
through the ``framecrc`` muxer with stream copy — one line per packet with its exact
timestamps and keyframe flag, no decoding (~0.15 s per 5 min of 360p). The scan reads the
packets through the same demuxer and timestamp handling that later cuts the file, so
keyframe times and cut times share one timeline.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import ffmpeg

ENV_FFMPEG = "EMBEDPIPE_FFMPEG"
GLOBAL_ARGS = ("-hide_banner", "-nostdin", "-nostats")
NOPTS = -(2**63)
KEY_FLAG = 0x1


class FfmpegError(RuntimeError):
    """ffmpeg failed or timed out; ``stderr`` holds its log for the dead letter."""

    def __init__(self, message: str, stderr: str = "", timed_out: bool = False):
        super().__init__(message)
        self.stderr = stderr
        self.timed_out = timed_out

    def reason(self) -> str:
        """ffmpeg's own diagnosis, minus log prefixes and the lines that only repeat it."""
        lines = []
        for line in self.stderr.splitlines():
            line = _LOG_PREFIX_RE.sub("", line).strip()
            if line and not line.startswith(_NOISE_PREFIXES) and line not in lines:
                lines.append(line)
        return "; ".join(lines[-3:]) or str(self)


class PacketScanError(FfmpegError):
    """The input opened (its header was read) but scanning its packets failed."""


_LOG_PREFIX_RE = re.compile(r"^(\[[^\]]*\] )+")
_NOISE_PREFIXES = (
    "Error opening input file ",
    "Error opening input files:",
    "Last message repeated",
)


@lru_cache(maxsize=1)
def _bundled_ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def resolve_ffmpeg(explicit: str | None = None) -> str:
    """Explicit path, then ``$EMBEDPIPE_FFMPEG``, then ``PATH``, then imageio-ffmpeg's binary."""
    for candidate in (explicit, os.environ.get(ENV_FFMPEG)):
        if candidate:
            return candidate
    return shutil.which("ffmpeg") or _bundled_ffmpeg()


def input_path(path: str) -> str:
    """Absolute ``file:`` URL so names with ``:`` or a leading ``-`` are never protocols/flags."""
    return "file:" + os.path.abspath(path)


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str  # video | audio | subtitle | data | attachment
    codec: str
    pix_fmt: str | None = None
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    bitrate_kbps: int = 0
    attached_pic: bool = False


@dataclass(frozen=True)
class MediaInfo:
    format_name: str
    duration: float | None
    bitrate_kbps: int
    streams: tuple[StreamInfo, ...]

    @property
    def video(self) -> StreamInfo | None:
        """First real video stream (cover art is not video)."""
        return next((s for s in self.streams if s.kind == "video" and not s.attached_pic), None)

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "audio"), None)


@dataclass(frozen=True)
class StreamSpan:
    kind: str
    start: float
    end: float


@dataclass(frozen=True)
class PacketScan:
    """Packet-level extent of each scanned stream plus the first video stream's keyframes."""

    streams: tuple[StreamSpan, ...]
    keyframes: tuple[float, ...]

    def end_of(self, kinds: Sequence[str] = ("video", "audio")) -> float:
        return max((s.end for s in self.streams if s.kind in kinds), default=0.0)

    @property
    def start(self) -> float:
        return min((s.start for s in self.streams), default=0.0)

    @property
    def end(self) -> float:
        return self.end_of()

    @property
    def span(self) -> float:
        """Earliest pts to latest pts + duration over all streams, hidden pre-roll included."""
        return self.end - self.start if self.streams else 0.0


_INPUT_RE = re.compile(r"^Input #0, (?P<fmt>.*?), from '", re.M)
_DURATION_RE = re.compile(
    r"^\s*Duration: (?:N/A|(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?))"
    r"(?:.*?bitrate: (?P<kbps>\d+) kb/s)?",
    re.M,
)
_STREAM_RE = re.compile(
    r"^\s*Stream #0:(?P<idx>\d+)[^:]*: (?P<kind>Video|Audio|Subtitle|Data|Attachment): "
    r"(?P<codec>[\w-]+)(?P<rest>.*)$",
    re.M,
)
_PIX_SIZE_RE = re.compile(r", (?P<pix>[a-z0-9_]+)(?:\([^)]*\))?, (?P<w>\d+)x(?P<h>\d+)[ ,]")
_AUDIO_RE = re.compile(r", (?P<rate>\d+) Hz, (?P<layout>[^,]+)")
_KBPS_RE = re.compile(r", (?P<kbps>\d+) kb/s")
_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "7.1": 8}


def _channels(layout: str) -> int:
    layout = layout.strip()
    match = re.match(r"(\d+) channels", layout)
    if match:
        return int(match.group(1))
    return _LAYOUT_CHANNELS.get(layout.split("(")[0], 2)


def parse_header(stderr: str) -> MediaInfo:
    """Parse the ``Input #0`` block ffmpeg prints for ``-i FILE``."""
    found = _INPUT_RE.search(stderr)
    if not found:
        raise FfmpegError("ffmpeg could not open the input", stderr)
    header = stderr[found.start() :].split("Stream mapping:")[0].split("\nOutput #0")[0]
    duration = None
    kbps = 0
    dur = _DURATION_RE.search(header)
    if dur and dur.group("h") is not None:
        duration = int(dur.group("h")) * 3600 + int(dur.group("m")) * 60 + float(dur.group("s"))
    if dur and dur.group("kbps"):
        kbps = int(dur.group("kbps"))
    streams = []
    for m in _STREAM_RE.finditer(header):
        rest = m.group("rest")
        fields = {}
        pix = _PIX_SIZE_RE.search(rest)
        if pix:
            fields.update(
                pix_fmt=pix.group("pix"), width=int(pix.group("w")), height=int(pix.group("h"))
            )
        audio = _AUDIO_RE.search(rest)
        if audio and m.group("kind") == "Audio":
            fields.update(
                sample_rate=int(audio.group("rate")), channels=_channels(audio.group("layout"))
            )
        rate = _KBPS_RE.search(rest)
        streams.append(
            StreamInfo(
                index=int(m.group("idx")),
                kind=m.group("kind").lower(),
                codec=m.group("codec"),
                bitrate_kbps=int(rate.group("kbps")) if rate else 0,
                attached_pic="(attached pic)" in rest,
                **fields,
            )
        )
    return MediaInfo(
        format_name=found.group("fmt"),
        duration=duration,
        bitrate_kbps=kbps,
        streams=tuple(streams),
    )


def parse_framecrc(lines) -> PacketScan:
    """Fold ``framecrc`` lines (``stream, dts, pts, duration, size, crc[, F=flags]``) into spans.

    A packet without ``F=`` has exactly the keyframe flag; discarded packets (edit-list
    pre-roll, codec priming) still count, because a consumer may play them. Extents are
    kept in integer ticks and scaled once at the end (scaling is monotonic, so the result
    is the same as scaling each packet): ~20k lines per 5 min of video with audio.
    """
    time_base: dict[int, float] = {}
    kinds: dict[int, str] = {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    key_ticks: list[int] = []
    key_stream = None
    for line in lines:
        if line[:1].isdigit():
            fields = line.split(",", 7)  # int() ignores the padding spaces
            idx, pts = int(fields[0]), int(fields[2])
            if pts == NOPTS:
                pts = int(fields[1])
                if pts == NOPTS:
                    continue
            dur = int(fields[3])
            end = pts + dur if dur > 0 else pts
            if idx in first:
                if pts < first[idx]:
                    first[idx] = pts
                if end > last[idx]:
                    last[idx] = end
            else:
                first[idx], last[idx] = pts, end
            if idx == key_stream:
                flags = fields[6].lstrip() if len(fields) > 6 else ""
                if not flags.startswith("F=") or int(flags[2:], 16) & KEY_FLAG:
                    key_ticks.append(pts)
        elif line.startswith("#tb "):
            idx, frac = line[4:].split(":")
            num, den = frac.strip().split("/")
            time_base[int(idx)] = int(num) / int(den)
        elif line.startswith("#media_type "):
            idx, kind = line[12:].split(":")
            kinds[int(idx)] = kind.strip()
            if key_stream is None and kind.strip() == "video":
                key_stream = int(idx)
    key_tb = time_base.get(key_stream, 0.0)
    return PacketScan(
        streams=tuple(
            StreamSpan(kinds.get(i, "data"), first[i] * time_base[i], last[i] * time_base[i])
            for i in sorted(first)
        ),
        keyframes=tuple(sorted({t * key_tb for t in key_ticks})),
    )


_LEVEL_TAG_RE = re.compile(
    r"^((?:\[[^\]]*\] )*?)\[(panic|fatal|error|warning|info|verbose|debug|trace)\] "
)
_ERROR_LEVELS = frozenset({"panic", "fatal", "error"})


def _untagged(log: str, levels: frozenset[str] | None = None) -> str:
    """A ``-v level+info`` log without its level tags; only ``levels`` when given (a line
    without a tag continues the message before it, so it keeps that message's level)."""
    kept = []
    level = "info"
    for line in log.splitlines(keepends=True):
        tagged = _LEVEL_TAG_RE.match(line)
        if tagged:
            level = tagged.group(2)
            line = tagged.group(1) + line[tagged.end() :]
        if levels is None or level in levels:
            kept.append(line)
    return "".join(kept)


@dataclass(frozen=True)
class FfmpegTool:
    """One resolved ffmpeg binary and the default per-call timeout."""

    exe: str
    timeout: float

    @classmethod
    def from_settings(cls, settings) -> "FfmpegTool":
        return cls(resolve_ffmpeg(settings.ffmpeg_path), settings.ffmpeg_timeout_seconds)

    def _execute(self, stream, timeout: float | None, loglevel: str) -> tuple[int, str]:
        proc = stream.global_args(*GLOBAL_ARGS, "-v", loglevel).run_async(
            cmd=self.exe, pipe_stderr=True, overwrite_output=True
        )
        try:
            _, err = proc.communicate(timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise FfmpegError(
                f"ffmpeg timed out after {timeout or self.timeout:.0f} s",
                err.decode("utf-8", "replace"),
                timed_out=True,
            ) from None
        return proc.returncode, err.decode("utf-8", "replace")

    def run(self, stream, timeout: float | None = None) -> str:
        """Run an ffmpeg-python output graph; raise ``FfmpegError`` unless it exits 0."""
        code, err = self._execute(stream, timeout, "error")
        if code != 0:
            raise FfmpegError(f"ffmpeg exited with {code}", err)
        return err

    def probe_and_scan(self, path: str) -> tuple[MediaInfo, PacketScan | PacketScanError | None]:
        """``probe`` and ``scan_packets`` of the first video and audio stream in one run
        (one process start fewer per file). The scan's log at info level carries the same
        ``Input #0`` header ``probe`` reads; each line is tagged with its level, so a failed
        scan reports exactly what an error-level run would.

        Raises only when the header cannot be read. A failed scan is returned, not raised,
        so the caller can first refuse the file for what its header shows, as before. The
        scan is ``None`` without video and audio, and keeps the kinds the header shows.
        """
        with tempfile.TemporaryDirectory(prefix="embedpipe-scan-") as tmp:
            out = os.path.join(tmp, "packets.crc")
            inp = ffmpeg.input(input_path(path))
            stream = ffmpeg.output(inp["V:0?"], inp["a:0?"], out, c="copy", f="framecrc")
            try:
                code, log = self._execute(stream, None, "level+info")
                failure = f"ffmpeg exited with {code}" if code else None
            except FfmpegError as err:  # timed out: reading the header, or the packets?
                if not _INPUT_RE.search(_untagged(err.stderr)):
                    raise
                code, log, failure = None, err.stderr, str(err)
            info = parse_header(_untagged(log))
            if info.video is None and info.audio is None:
                return info, None
            if failure:
                return info, PacketScanError(
                    failure, _untagged(log, _ERROR_LEVELS), timed_out=code is None
                )
            with open(out, encoding="utf-8", errors="replace") as fh:
                scan = parse_framecrc(fh)
        kinds = {s.kind for s in (info.video, info.audio) if s is not None}
        return info, PacketScan(tuple(s for s in scan.streams if s.kind in kinds), scan.keyframes)

    def scan_packets(self, path: str, selectors: Sequence[str]) -> PacketScan:
        """Exact packet extents and keyframes of the selected streams (e.g. ``"V:0"``)."""
        return self.scan_packets_many([path], selectors)[0]

    def scan_packets_many(self, paths: Sequence[str], selectors: Sequence[str]) -> list[PacketScan]:
        """``scan_packets`` of each file, all in one ffmpeg run (one framecrc output per
        input): the same scans for one process start instead of one per file."""
        with tempfile.TemporaryDirectory(prefix="embedpipe-scan-") as tmp:
            outs = [os.path.join(tmp, f"packets{i}.crc") for i in range(len(paths))]
            streams = []
            for path, out in zip(paths, outs):
                inp = ffmpeg.input(input_path(path))
                streams.append(ffmpeg.output(*(inp[s] for s in selectors), out, c="copy", f="framecrc"))
            self.run(ffmpeg.merge_outputs(*streams))
            scans = []
            for out in outs:
                with open(out, encoding="utf-8", errors="replace") as fh:
                    scans.append(parse_framecrc(fh))
            return scans
