"""Shared machinery of the time-based chunkers (audio, video).

Plan balanced windows of at most ``target`` seconds, cut them with ffmpeg's segment muxer in
one pass per group of disjoint windows, and verify every piece by packet span and bytes;
a piece over either limit is re-cut from the source by re-encoding, down a quality ladder.
Window times come from the plan, never from summed piece durations (which drift).
"""

from __future__ import annotations

import bisect
import glob
import logging
import math
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import ffmpeg

from transforms.chunk_errors import (
    CORRUPT_MEDIA,
    MEDIA_TIMEOUT,
    TOO_LARGE,
    TRUNCATED_MEDIA,
    ChunkingError,
)
from transforms.media.ffmpeg_tools import (
    FfmpegError,
    FfmpegTool,
    MediaInfo,
    PacketScan,
    PacketScanError,
    input_path,
)
from transforms.types import Locator

log = logging.getLogger(__name__)

# Cut times are passed this much before the planned keyframe so float rounding can never
# push the segment muxer (which cuts at the first keyframe >= time) to the next keyframe.
CUT_LEAD_SECONDS = 0.010
# A piece whose packet span differs more than this from its planned window was cut at the
# wrong keyframe; one that matches carries priming/tail packets of a few tens of ms at most.
PLAN_TOLERANCE_SECONDS = 0.25


@dataclass(frozen=True, order=True)
class Window:
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def locator(self) -> Locator:
        return Locator(unit="seconds", start=round(self.start, 3), end=round(self.end, 3))


def plan_windows(
    duration: float,
    target: float,
    cut_points: Sequence[float] | None = None,
    overlap: float = 0.0,
) -> list[Window] | None:
    """Balanced windows of <= ``target`` s covering ``[0, duration]``.

    ``cut_points`` are the only allowed boundaries (keyframes for stream copy); ``None``
    allows any time. Each step aims at the remaining length split evenly (no tiny tail)
    and snaps to the nearest allowed point within ``target``. With ``overlap`` a window
    starts at the latest allowed point <= previous end - overlap. Returns ``None`` when
    some gap between allowed points is longer than ``target``: copy cannot meet it.
    """
    if not 0.0 <= overlap < target:
        raise ValueError(f"overlap {overlap} s must be in [0, target={target} s)")
    windows: list[Window] = []
    start = 0.0
    while duration - start > target:
        remaining = duration - start
        n = math.ceil((remaining - overlap) / (target - overlap))
        ideal_end = start + (remaining + (n - 1) * overlap) / n
        if cut_points is None:
            end = ideal_end
            next_start = end - overlap
        else:
            lo = bisect.bisect_right(cut_points, start)
            hi = bisect.bisect_right(cut_points, start + target)
            candidates = cut_points[lo:hi]
            if not candidates:
                return None
            end = min(candidates, key=lambda t: abs(t - ideal_end))
            back = cut_points[lo : bisect.bisect_right(cut_points, end - overlap)]
            next_start = back[-1] if overlap and back else end
        windows.append(Window(start, end))
        start = next_start
    windows.append(Window(start, duration))
    return windows


def disjoint_groups(windows: Sequence[Window]) -> list[list[Window]]:
    """Greedy interval colouring: each group can be cut in one segment-muxer pass."""
    groups: list[list[Window]] = []
    for window in windows:
        group = next((g for g in groups if g[-1].end <= window.start), None)
        if group is None:
            groups.append([window])
        else:
            group.append(window)
    return groups


def window_boundaries(windows: Sequence[Window]) -> list[float]:
    return sorted({t for w in windows for t in (w.start, w.end) if t > 0})


@dataclass(frozen=True)
class CutSpec:
    """How pieces are made and what they must satisfy."""

    streams: tuple[str, ...]  # input selectors, e.g. ("V:0", "a:0")
    output_args: Mapping[str, object]  # codec options of the one-pass cut
    segment_format: str  # mp4 | mp3 | wav
    max_seconds: float
    max_bytes: int
    recut_ladder: tuple[Mapping[str, object], ...] = field(default_factory=tuple)
    # Pieces may be checked at their edges (``FfmpegTool.scan_spans_many``): only when the
    # source's frames are shown at most ``EDGE_MAX_REORDER`` s after they are decoded.
    edge_scans: bool = False


def _chunking_error(what: str, err: FfmpegError) -> ChunkingError:
    error_class = MEDIA_TIMEOUT if err.timed_out else CORRUPT_MEDIA
    detail = str(err) if err.timed_out else err.reason()
    return ChunkingError(error_class, f"{what}: {detail}")


@contextmanager
def ffmpeg_failures_as_chunking_errors(what: str):
    """Turn ``FfmpegError`` into the dead-letter error the Chunk DoFn expects."""
    try:
        yield
    except FfmpegError as err:
        raise _chunking_error(what, err) from err


def probe_media(
    tool: FfmpegTool, path: str
) -> tuple[MediaInfo, PacketScan | PacketScanError | None]:
    """Header and packet scan of the first video and audio stream, in one ffmpeg run
    (``FfmpegTool.probe_and_scan``); the scan is judged by ``scan_with_coverage``."""
    if os.path.getsize(path) == 0:
        raise ChunkingError(CORRUPT_MEDIA, "empty file (0 bytes)")
    with ffmpeg_failures_as_chunking_errors("ffmpeg cannot read the file"):
        return tool.probe_and_scan(path)


def scan_with_coverage(
    scan: PacketScan | PacketScanError, info: MediaInfo, settings, uri: str
) -> PacketScan:
    """The packet scan ``probe_media`` made; refuse or warn on a truncated file.

    A file cut short (e.g. a faststart MP4 that lost its tail) still opens with its full
    declared duration; only its packets reveal how much is really there. The
    ``video_min_coverage`` and ``truncated_media`` settings apply to audio files as well.
    """
    if isinstance(scan, PacketScanError):
        raise _chunking_error("packet scan failed", scan) from scan
    if scan.span <= 0:
        raise ChunkingError(CORRUPT_MEDIA, "no audio or video packets could be read")
    if info.duration:
        coverage = scan.span / info.duration
        if coverage < settings.video_min_coverage:
            message = (
                f"packets cover {scan.span:.2f} s of the declared {info.duration:.2f} s "
                f"({coverage:.0%}); the file looks truncated"
            )
            if settings.truncated_media == "deadletter":
                raise ChunkingError(TRUNCATED_MEDIA, message)
            log.warning("%s: %s; chunking what is there", uri, message)
    return scan


def _just_before(t: float, cut_points: Sequence[float]) -> float:
    """``t`` moved slightly earlier, but never as far back as the previous cut point."""
    index = bisect.bisect_left(cut_points, t)
    previous = cut_points[index - 1] if index > 0 else 0.0
    return t - min(CUT_LEAD_SECONDS, (t - previous) / 2)


def _segment_pass(
    tool: FfmpegTool,
    src: str,
    group: Sequence[Window],
    cut_points: Sequence[float],
    spec: CutSpec,
    out_dir: str,
    duration: float,
) -> list[str]:
    """Cut ``src`` at the group's boundaries in one pass; pieces in time order."""
    times = [_just_before(t, cut_points) for t in window_boundaries(group) if t < duration]
    # A sentinel past the end keeps the list non-empty (the muxer's default is 2 s pieces).
    times.append(duration + 1.0)
    inp = ffmpeg.input(input_path(src))
    pattern = os.path.join(out_dir, f"piece%05d.{spec.segment_format}")
    options = dict(spec.output_args)
    options.update(
        f="segment",
        segment_times=",".join(f"{t:.6f}" for t in times),
        segment_format=spec.segment_format,
        reset_timestamps=1,
        map_chapters=-1,
    )
    tool.run(
        ffmpeg.output(*(inp[s] for s in spec.streams), pattern, **options), tool.timeout + duration
    )
    return sorted(glob.glob(os.path.join(out_dir, f"piece*.{spec.segment_format}")))


def _problem(tool: FfmpegTool, path: str, spec: CutSpec, window: Window | None,
             scan: PacketScan | None = None) -> str | None:
    """Why a piece is unusable, or ``None``; with ``window`` also check it matches the plan.
    ``scan`` is the piece's packet scan when it was made already (one run for a pass)."""
    size = os.path.getsize(path)
    scan = scan or tool.scan_packets(path, [s + "?" for s in spec.streams])
    span = scan.span
    if span <= 0:
        return "the piece has no packets"
    if span > spec.max_seconds or size > spec.max_bytes:
        return f"{span:.2f} s and {size} bytes exceed {spec.max_seconds} s / {spec.max_bytes} bytes"
    if window is not None and abs(span - window.duration) > PLAN_TOLERANCE_SECONDS:
        return f"{span:.2f} s instead of the planned {window.duration:.2f} s"
    return None


def _scan_pieces(tool: FfmpegTool, pieces: Sequence[str | None], spec: CutSpec) -> list:
    """Packet scans of a pass's pieces in one ffmpeg run; None where a piece is missing,
    and for all of them when that run fails (each piece is then scanned on its own, so
    the good ones before a bad one are still kept)."""
    present = [p for p in pieces if p is not None]
    if not present:
        return [None] * len(pieces)
    scan_many = tool.scan_spans_many if spec.edge_scans else tool.scan_packets_many
    try:
        scans = iter(scan_many(present, [s + "?" for s in spec.streams]))
    except FfmpegError:
        return [None] * len(pieces)
    return [None if p is None else next(scans) for p in pieces]


def _recut(
    tool: FfmpegTool, src: str, window: Window, spec: CutSpec, out_dir: str, why: str
) -> str:
    """Re-encode one window exactly (accurate seek), trying each ladder step in turn."""
    out = os.path.join(out_dir, f"recut.{spec.segment_format}")
    log.info("re-cutting %.2f-%.2f s: %s", window.start, window.end, why)
    for step in spec.recut_ladder:
        inp = ffmpeg.input(input_path(src), ss=f"{window.start:.6f}")
        stream = ffmpeg.output(
            *(inp[s] for s in spec.streams),
            out,
            t=f"{window.duration:.6f}",
            f=spec.segment_format,
            **step,
        )
        tool.run(stream, timeout=tool.timeout + window.duration)
        why = _problem(tool, out, spec, None)
        if why is None:
            return out
    raise ChunkingError(
        TOO_LARGE,
        f"window {window.start:.2f}-{window.end:.2f} s does not fit even after "
        f"{len(spec.recut_ladder)} re-encodes down to the smallest quality: {why}",
    )


def cut_windows(
    tool: FfmpegTool,
    src: str,
    windows: Sequence[Window],
    cut_points: Sequence[float],
    spec: CutSpec,
    work_dir: str,
) -> Iterator[tuple[Window, str]]:
    """Yield ``(window, path)`` for every window, each piece verified against ``spec``.

    A path is valid until the generator resumes; at most one pass's pieces are on disk.
    """
    duration = windows[-1].end
    with ffmpeg_failures_as_chunking_errors("cutting failed"):
        for n, group in enumerate(disjoint_groups(windows)):
            out_dir = os.path.join(work_dir, f"pass{n}")
            os.makedirs(out_dir)
            pieces: list[str | None] = _segment_pass(
                tool, src, group, cut_points, spec, out_dir, duration
            )
            starts = [0.0] + [t for t in window_boundaries(group) if t < duration]
            if len(pieces) != len(starts):
                log.warning("expected %d pieces, got %d: re-cutting each", len(starts), len(pieces))
                pieces = [None] * len(starts)
            scans = _scan_pieces(tool, pieces, spec)
            for window in group:
                at = starts.index(window.start)
                path = pieces[at]
                why = (
                    "the cut did not produce it"
                    if path is None
                    else _problem(tool, path, spec, window, scans[at])
                )
                if why is not None:
                    path = _recut(tool, src, window, spec, out_dir, why)
                yield window, path
                os.remove(path)
            shutil.rmtree(out_dir)
