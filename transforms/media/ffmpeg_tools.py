"""ffmpeg with a wall-clock timeout, and probing without ffprobe.

Only ``ffmpeg`` is guaranteed (``imageio-ffmpeg`` ships no ffprobe), so probing uses two
ffmpeg runs: the input header it prints (duration, streams, codecs, size) and a packet scan
through the ``framecrc`` muxer with stream copy — one line per packet with its exact
timestamps and keyframe flag, no decoding (~0.15 s per 5 min of 360p). The scan reads the
packets through the same demuxer and timestamp handling that later cuts the file, so
keyframe times and cut times share one timeline.

In MP4/MOV a stream's extent is read at its edges (its first and its last seconds) where
a full read would only confirm it: the audio of a source (its video is still read whole,
for the keyframes), and the cut pieces, whose keyframes nobody needs. The edges vouch for
their answer or step aside for the full scan, so the result is the same either way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
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

    @property
    def kinds(self) -> set[str]:
        """"video" and/or "audio": the kinds of the streams a scan keeps."""
        return {s.kind for s in (self.video, self.audio) if s is not None}


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
    # How long after its decode time the first video stream shows a frame, at most (pts −
    # dts): B-frame reordering, or a timestamp gap a reordered frame straddles.
    video_reorder: float = 0.0

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
_HEADER_RE = re.compile(r"^Input #(?P<input>\d+), (?P<fmt>.*?), from '(?P<url>.*)':$", re.M)
_DURATION_RE = re.compile(
    r"^\s*Duration: (?:N/A|(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?))"
    r"(?:.*?bitrate: (?P<kbps>\d+) kb/s)?",
    re.M,
)
_STREAM_PATTERN = (
    r"^\s*Stream #{input}:(?P<idx>\d+)[^:]*: (?P<kind>Video|Audio|Subtitle|Data|Attachment): "
    r"(?P<codec>[\w-]+)(?P<rest>.*)$"
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


def parse_header(stderr: str, input_index: int = 0) -> MediaInfo:
    """Parse the ``Input #N`` block ffmpeg prints for its N-th ``-i FILE`` (default the first)."""
    if input_index == 0:
        found = _INPUT_RE.search(stderr)
    else:
        found = next((m for m in _HEADER_RE.finditer(stderr) if m["input"] == str(input_index)), None)
    if not found:
        raise FfmpegError("ffmpeg could not open the input", stderr)
    header = stderr[found.start() :].split("Stream mapping:")[0].split("\nOutput #0")[0]
    following = next((m for m in _HEADER_RE.finditer(header) if m.start() > 0), None)
    header = header[: following.start()] if following else header
    duration = None
    kbps = 0
    dur = _DURATION_RE.search(header)
    if dur and dur.group("h") is not None:
        duration = int(dur.group("h")) * 3600 + int(dur.group("m")) * 60 + float(dur.group("s"))
    if dur and dur.group("kbps"):
        kbps = int(dur.group("kbps"))
    streams = []
    for m in re.finditer(_STREAM_PATTERN.format(input=input_index), header, re.M):
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


@dataclass
class _PacketTicks:
    """A ``framecrc`` file folded per output stream, in integer ticks of each stream's time
    base: first pts, last pts + duration, packet count, and the first video stream's
    keyframe pts."""

    time_base: dict[int, tuple[int, int]] = field(default_factory=dict)
    kinds: dict[int, str] = field(default_factory=dict)
    first: dict[int, int] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)
    count: dict[int, int] = field(default_factory=dict)
    key_ticks: list[int] = field(default_factory=list)
    key_stream: int | None = None
    reorder: int = 0  # the key stream's largest pts − dts

    def seconds(self, idx: int, ticks: int) -> float:
        num, den = self.time_base[idx]
        return ticks * (num / den)

    def scan(self) -> PacketScan:
        reorder = self.seconds(self.key_stream, self.reorder) if self.key_stream is not None else 0.0
        return PacketScan(
            streams=tuple(
                StreamSpan(
                    self.kinds.get(i, "data"),
                    self.seconds(i, self.first[i]),
                    self.seconds(i, self.last[i]),
                )
                for i in sorted(self.first)
            ),
            keyframes=tuple(sorted({self.seconds(self.key_stream, t) for t in self.key_ticks})),
            video_reorder=reorder,
        )


def _fold_framecrc(lines) -> _PacketTicks:
    """Fold ``framecrc`` lines (``stream, dts, pts, duration, size, crc[, F=flags]``) per stream.

    A packet without ``F=`` has exactly the keyframe flag; discarded packets (edit-list
    pre-roll, codec priming) still count, because a consumer may play them. Extents are
    kept in integer ticks and scaled once at the end (scaling is monotonic, so the result
    is the same as scaling each packet): ~20k lines per 5 min of video with audio.
    """
    folded = _PacketTicks()
    first, last, count, key_ticks = folded.first, folded.last, folded.count, folded.key_ticks
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
                count[idx] += 1
                if pts < first[idx]:
                    first[idx] = pts
                if end > last[idx]:
                    last[idx] = end
            else:
                first[idx], last[idx], count[idx] = pts, end, 1
            if idx == folded.key_stream:
                dts = int(fields[1])
                if dts != NOPTS and pts - dts > folded.reorder:
                    folded.reorder = pts - dts
                flags = fields[6].lstrip() if len(fields) > 6 else ""
                if not flags.startswith("F=") or int(flags[2:], 16) & KEY_FLAG:
                    key_ticks.append(pts)
        elif line.startswith("#tb "):
            idx, frac = line[4:].split(":")
            num, den = frac.strip().split("/")
            folded.time_base[int(idx)] = (int(num), int(den))
        elif line.startswith("#media_type "):
            idx, kind = line[12:].split(":")
            folded.kinds[int(idx)] = kind.strip()
            if folded.key_stream is None and kind.strip() == "video":
                folded.key_stream = int(idx)
    return folded


def parse_framecrc(lines) -> PacketScan:
    """Packet extents and keyframes of a ``framecrc`` file (see ``_fold_framecrc``)."""
    return _fold_framecrc(lines).scan()


def _read_framecrc(path: str) -> _PacketTicks:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return _fold_framecrc(fh)


# Edge scans, for the MOV family only. There a sample lasts until the next one's decode
# time, so a stream's timestamps reach past its last seconds only by a composition offset
# (B-frame reordering: at most 16 frames in H.264 and HEVC, other codecs less), and its
# earliest pts lies among its first packets. Reads of the first and of the last
# EDGE_SECONDS s therefore give the extents a full scan gives, once each holds at least
# EDGE_PACKETS packets of every stream the header shows. Anything less and the file is
# scanned in full. (Not Matroska: a block's duration is its own, so one long block in the
# middle can end after the tail; nor files whose packets need ffmpeg to invent timestamps.)
EDGE_PACKETS = 32
EDGE_SECONDS = 5
EDGE_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})
_MOV_SUFFIXES = (".mp4", ".m4v", ".mov", ".3gp", ".3g2", ".mj2")
# Timestamps as a plain run gives them (shifted by the file's start) in a run that seeks.
EDGE_RUN_ARGS = ("-copyts", "-start_at_zero")
_KIND_OF_SELECTOR = {"V": "video", "v": "video", "a": "audio"}
# Pieces cut by stream copy keep their source's pts − dts, so a source whose video shows no
# frame later than this after decoding gives pieces whose last EDGE_SECONDS hold their end.
EDGE_MAX_REORDER = EDGE_SECONDS / 2


def _edge_candidate(path: str) -> bool:
    """Worth an edge scan by its name; the header's format name decides whether it counts."""
    return path.lower().endswith(_MOV_SUFFIXES)


def _edge_outputs(
    path: str, selectors: Sequence[str], head: str, tail: str, audio_only: bool = False
) -> list:
    """framecrc outputs of the first and the last EDGE_SECONDS s of ``path``'s selected
    streams, for a run with EDGE_RUN_ARGS. (A packet count per output, ``-frames``, would
    end the whole output at the first stream to reach it.) The tail seeks to any sample,
    so it is EDGE_SECONDS of video rather than everything from the keyframe before;
    ``copyinkf`` keeps the packets ahead of its first keyframe. ``audio_only`` keeps
    ffmpeg from filling the outputs with streams of its own choice when the file has no
    audio (the run then fails, and a full scan follows)."""
    start = ffmpeg.input(input_path(path), t=EDGE_SECONDS)
    end = ffmpeg.input(input_path(path), sseof=-EDGE_SECONDS, seek2any=1)
    only = {"vn": None, "sn": None, "dn": None} if audio_only else {}
    return [
        ffmpeg.output(*(start[s] for s in selectors), head, c="copy", f="framecrc", **only),
        ffmpeg.output(*(end[s] for s in selectors), tail, c="copy", f="framecrc", copyinkf=None, **only),
    ]


def _edge_spans(head: _PacketTicks, tail: _PacketTicks) -> dict:
    """Extent of each stream by kind, in stream order, from its head and tail reads; the
    value is ``None`` where they cannot vouch for it (seen by one read only, a different
    time base, fewer than EDGE_PACKETS packets in either read, a second stream of the kind)."""
    spans: dict = {}
    for i in sorted(set(head.first) | set(tail.first)):
        kind = head.kinds.get(i, tail.kinds.get(i))
        sound = (
            kind not in spans
            and i in head.first
            and i in tail.first
            and head.kinds.get(i) == tail.kinds.get(i)
            and head.time_base.get(i) == tail.time_base.get(i)
            and min(head.count[i], tail.count[i]) >= EDGE_PACKETS
        )
        spans[kind] = (
            StreamSpan(
                kind,
                head.seconds(i, min(head.first[i], tail.first[i])),
                head.seconds(i, max(head.last[i], tail.last[i])),
            )
            if sound
            else None
        )
    return spans


def _edge_read(head: str, tail: str, info: MediaInfo | None, kinds: set[str]):
    """The extents of ``kinds`` from one file's head and tail outputs, in stream order;
    ``None`` unless its header shows a MOV-family file and the edges vouch for each kind
    (a stream that neither edge sees, e.g. audio only in the middle, is not vouched for)."""
    if info is None or info.format_name not in EDGE_FORMATS:
        return None
    spans = _edge_spans(_read_framecrc(head), _read_framecrc(tail))
    if any(spans.get(kind) is None for kind in kinds):
        return None
    return tuple(span for kind, span in spans.items() if kind in kinds)


def _header_kinds(info: MediaInfo, selectors: Sequence[str]) -> set[str]:
    """The kinds ``selectors`` (e.g. ``"V:0?"``, ``"a:0?"``) pick from a file, by its header."""
    return {_KIND_OF_SELECTOR.get(s[0]) for s in selectors} & info.kinds


def _input_headers(log: str) -> dict[str, MediaInfo]:
    """The header of each input of a multi-input run, by its URL."""
    return {
        found.group("url"): parse_header(log, int(found.group("input")))
        for found in _HEADER_RE.finditer(log)
    }


def _of_kinds(scan: PacketScan, info: MediaInfo) -> PacketScan:
    """``scan`` without the streams of kinds the header does not count (e.g. cover art)."""
    return replace(scan, streams=tuple(s for s in scan.streams if s.kind in info.kinds))


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

    def _probe(self, stream) -> tuple[MediaInfo, PacketScanError | None, str]:
        """Run a graph whose input #0 is the file at info level: its header, the scan's
        failure if any (a timeout after the header was read is one), and the tagged log.
        Raises only when the header cannot be read."""
        try:
            code, log = self._execute(stream, None, "level+info")
            reason = f"ffmpeg exited with {code}" if code else None
        except FfmpegError as err:  # timed out: reading the header, or the packets?
            if not _INPUT_RE.search(_untagged(err.stderr)):
                raise
            code, log, reason = None, err.stderr, str(err)
        info = parse_header(_untagged(log))
        failure = None
        if reason:
            failure = PacketScanError(reason, _untagged(log, _ERROR_LEVELS), timed_out=code is None)
        return info, failure, log

    def probe_and_scan(self, path: str) -> tuple[MediaInfo, PacketScan | PacketScanError | None]:
        """``probe`` and ``scan_packets`` of the first video and audio stream in one run
        (one process start fewer per file). The scan's log at info level carries the same
        ``Input #0`` header ``probe`` reads; each line is tagged with its level, so a failed
        scan reports exactly what an error-level run would.

        In an MP4/MOV with video, the audio is read at its edges only (``_edge_read``)
        while the video is read in full for its keyframes; whatever the edges cannot vouch
        for is scanned in full, so the result is the same either way.

        Raises only when the header cannot be read. A failed scan is returned, not raised,
        so the caller can first refuse the file for what its header shows, as before. The
        scan is ``None`` without video and audio, and keeps the kinds the header shows.
        """
        with tempfile.TemporaryDirectory(prefix="embedpipe-scan-") as tmp:
            if _edge_candidate(path):
                found = self._probe_with_audio_edges(path, tmp)
                if found is not None:
                    return found
            out = os.path.join(tmp, "packets.crc")
            inp = ffmpeg.input(input_path(path))
            info, failure, _ = self._probe(
                ffmpeg.output(inp["V:0?"], inp["a:0?"], out, c="copy", f="framecrc")
            )
            if info.video is None and info.audio is None:
                return info, None
            if failure:
                return info, failure
            return info, _of_kinds(_read_framecrc(out).scan(), info)

    def _probe_with_audio_edges(
        self, path: str, tmp: str
    ) -> tuple[MediaInfo, PacketScan | PacketScanError | None] | None:
        """``probe_and_scan`` reading the audio at its edges; ``None`` where that cannot
        vouch for the result: no video (ffmpeg picks streams of its own for an output
        whose every map is missing), a failed run or an error in its log, another format,
        an audio track the edges do not cover."""
        whole, head, tail = (os.path.join(tmp, f"{name}.crc") for name in ("whole", "head", "tail"))
        inp = ffmpeg.input(input_path(path))
        stream = ffmpeg.merge_outputs(
            ffmpeg.output(inp["V:0?"], whole, c="copy", f="framecrc"),
            *_edge_outputs(path, ["a:0?"], head, tail, audio_only=True),
        ).global_args(*EDGE_RUN_ARGS)
        try:
            info, failure, log = self._probe(stream)
        except FfmpegError as err:
            if err.timed_out:
                raise
            return None  # the full scan reports what cannot be read, in its own words
        if failure is not None and failure.timed_out:
            return info, failure  # a full scan would take as long again
        if info.video is None or failure or _untagged(log, _ERROR_LEVELS).strip():
            return None
        needed = _header_kinds(info, ["a:0?"])
        audio = _edge_read(head, tail, _input_headers(_untagged(log)).get(input_path(path)), needed)
        if audio is None:
            return None
        scan = _read_framecrc(whole).scan()
        return info, _of_kinds(replace(scan, streams=scan.streams + audio), info)

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
            return [_read_framecrc(out).scan() for out in outs]

    def scan_spans_many(self, paths: Sequence[str], selectors: Sequence[str]) -> list[PacketScan]:
        """The packet extents ``scan_packets_many`` finds, without keyframes: MP4/MOV files
        are read at their edges (``_edge_read``), all in one run; the rest, and any file the
        edges cannot vouch for, are scanned in full. Raises ``FfmpegError`` on a timeout."""
        scans: list[PacketScan | None] = [None] * len(paths)
        edged = [i for i, path in enumerate(paths) if _edge_candidate(path)]
        if edged:
            for i, scan in zip(edged, self._edge_scans([paths[i] for i in edged], selectors)):
                scans[i] = scan
        missing = [i for i, scan in enumerate(scans) if scan is None]
        if missing:
            for i, scan in zip(missing, self.scan_packets_many([paths[i] for i in missing], selectors)):
                scans[i] = PacketScan(scan.streams, ())
        return scans

    def _edge_scans(self, paths: Sequence[str], selectors: Sequence[str]) -> list[PacketScan | None]:
        """Edge extents of each file in one run; ``None`` for a file they cannot vouch for,
        and for all of them when the run fails or logs an error."""
        with tempfile.TemporaryDirectory(prefix="embedpipe-scan-") as tmp:
            outs = [(os.path.join(tmp, f"head{i}.crc"), os.path.join(tmp, f"tail{i}.crc"))
                    for i in range(len(paths))]
            stream = ffmpeg.merge_outputs(
                *(o for path, (head, tail) in zip(paths, outs)
                  for o in _edge_outputs(path, selectors, head, tail))
            ).global_args(*EDGE_RUN_ARGS)
            code, log = self._execute(stream, None, "level+info")
            if code or _untagged(log, _ERROR_LEVELS).strip():
                return [None] * len(paths)
            headers = _input_headers(_untagged(log))
            scans: list[PacketScan | None] = []
            for path, (head, tail) in zip(paths, outs):
                info = headers.get(input_path(path))
                kinds = _header_kinds(info, selectors) if info else set()
                streams = _edge_read(head, tail, info, kinds)
                scans.append(None if streams is None else PacketScan(streams, ()))
            return scans
