"""Benchmark the media chunkers against the naive one-liners they replace.

Video: ``chunk_video`` vs raw ``ffmpeg -f segment -c copy -segment_time T`` (T = limit −
margin) on the same generated clips, in media-seconds per wall-second, with how many pieces
of each exceed the limit by packet span, and where ``chunk_video``'s time goes (each ffmpeg
run vs Python). PDF: ``chunk_pdf`` vs a bare pypdf split, in pages per second. Media is
generated with ``tests/media_factory.py`` into a temporary directory.

    .venv/bin/python scripts/bench_chunking.py [--seconds 300] [--pages 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import base64
import glob
import io
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

import media_factory as mf  # noqa: E402
from bench_common import load_average, row, save_rows  # noqa: E402
from pypdf import PdfReader, PdfWriter  # noqa: E402

from transforms.media import chunk_builder, ffmpeg_tools  # noqa: E402
from transforms.media.ffmpeg_tools import FfmpegTool  # noqa: E402
from transforms.media.pdf import chunk_pdf  # noqa: E402
from transforms.media.video import chunk_video  # noqa: E402
from transforms.settings import ChunkSettings  # noqa: E402
from transforms.types import SourceObject  # noqa: E402

SETTINGS = ChunkSettings(limits=mf.PRODUCTION_LIMITS)
LIMIT = SETTINGS.limits.video_with_audio_seconds  # the clips carry audio
TARGET = LIMIT - SETTINGS.limits.duration_margin_seconds


def source(path: str, kind: str) -> SourceObject:
    return SourceObject(f"file://{path}", os.path.getsize(path), "1", kind)


def span_of(tool: FfmpegTool, data: bytes, work: str) -> float:
    path = os.path.join(work, "measure.mp4")
    with open(path, "wb") as fh:
        fh.write(data)
    return tool.scan_packets(path, ["V:0?", "a:0?"]).span


def raw_segment(tool: FfmpegTool, path: str, work: str) -> tuple[float, list[float]]:
    out = os.path.join(work, "raw")
    os.makedirs(out)
    started = time.perf_counter()
    subprocess.run(
        [
            tool.exe,
            "-v",
            "error",
            "-nostdin",
            "-i",
            path,
            "-map",
            "0",
            "-c",
            "copy",
            "-f",
            "segment",
            "-segment_time",
            str(TARGET),
            "-reset_timestamps",
            "1",
            os.path.join(out, "p%03d.mp4"),
        ],
        check=True,
    )
    wall = time.perf_counter() - started
    spans = [tool.scan_packets(p, ["V:0?", "a:0?"]).span for p in sorted(glob.glob(f"{out}/*.mp4"))]
    return wall, spans


FFMPEG_RUNS: dict[str, list[float]] = defaultdict(list)
SOURCE_SCAN = "header + packet scan (source)"
PIECE_SCAN = "packet scan (cut pieces)"
CUT = "cut (segment muxer)"
PARSE = "parse framecrc"
BASE64 = "base64 of the chunks"


def _timed_ffmpeg(execute):
    """Wrap FfmpegTool._execute to time every ffmpeg run chunk_video makes, by kind."""

    def run(self, stream, timeout, loglevel):
        args = stream.get_args()
        pieces = any(os.path.basename(a).startswith(("piece", "recut")) for a in args)
        kind = (CUT if "segment" in args else "re-encode" if "framecrc" not in args
                else PIECE_SCAN if pieces else SOURCE_SCAN)
        started = time.perf_counter()
        try:
            return execute(self, stream, timeout, loglevel)
        finally:
            FFMPEG_RUNS[kind].append(time.perf_counter() - started)

    return run


def _timed(kind: str, function):
    """Wrap a Python step (framecrc parsing, the base64 of inline parts) to time it."""

    def run(*args):
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            FFMPEG_RUNS[kind].append(time.perf_counter() - started)

    return run


PROFILES: list[tuple[float, dict]] = []  # (wall, ffmpeg runs by kind) of each chunk_video run


def ours(tool: FfmpegTool, path: str, work: str) -> tuple[float, list[float]]:
    FFMPEG_RUNS.clear()
    started = time.perf_counter()
    payloads = [
        c.parts[0]["inline_data"]["data"]
        for c in chunk_video(source(path, "video"), path, SETTINGS)
    ]
    wall = time.perf_counter() - started
    PROFILES.append((wall, {k: list(v) for k, v in FFMPEG_RUNS.items()}))
    return wall, [span_of(tool, base64.b64decode(p), work) for p in payloads]


def print_profile(raw_wall: float) -> None:
    """Where chunk_video's time goes, against the raw command's one run: the floor for a
    guaranteed limit is one read of the source's packets (keyframes, true end) plus one cut."""
    wall, runs_by_kind = min(PROFILES, key=lambda p: p[0])
    parse = sum(runs_by_kind.pop(PARSE, []))
    encode = sum(runs_by_kind.pop(BASE64, []))
    spent = sum(sum(v) for v in runs_by_kind.values())
    print(f"  where chunk_video's {wall:.3f} s go (its fastest run; raw: one {raw_wall:.3f} s run):")
    for kind, runs in runs_by_kind.items():
        print(f"    ffmpeg {kind:30} {len(runs):3d} run(s) {sum(runs):7.3f} s {sum(runs) / raw_wall:5.2f}x raw")
    print(f"    Python: {PARSE} (source + pieces) {parse:16.3f} s")
    print(f"    Python: {BASE64} (the request format) {encode:12.3f} s")
    print(f"    Python: the rest (plan, read, temp files) {max(0.0, wall - spent - parse - encode):9.3f} s")
    floor = sum(runs_by_kind.get(SOURCE_SCAN, [])) + sum(runs_by_kind.get(CUT, []))
    print(f"    floor (source scan + cut): {floor:.3f} s = {floor / raw_wall:.2f}x raw, "
          f"at best {raw_wall / floor:.2f}x its throughput; the piece scan that verifies the "
          f"limit adds {sum(runs_by_kind.get(PIECE_SCAN, [])) / raw_wall:.2f}x")


def bench_video(seconds: float, work: str, repeats: int) -> dict:
    tool = FfmpegTool.from_settings(SETTINGS)
    FfmpegTool._execute = _timed_ffmpeg(FfmpegTool._execute)
    ffmpeg_tools._fold_framecrc = _timed(PARSE, ffmpeg_tools._fold_framecrc)
    chunk_builder.inline_part = _timed(BASE64, chunk_builder.inline_part)
    clips = {
        "h264 640x360, GOP 16.7 s": mf.h264_mp4(
            f"{work}/gop.mp4", seconds, gop=250, size="640x360"
        ),
        "h264 640x360, 1 keyframe": mf.long_gop_mp4(f"{work}/onekey.mp4", seconds, size="640x360"),
    }
    print(f"video: limit {LIMIT:.0f} s (with audio), target {TARGET:.0f} s, {seconds:.0f} s clips "
          f"({load_average()}); best of {repeats} runs each, the two methods in turn")
    print(
        f"  {'clip':28} {'method':22} {'chunks':>6} {'over':>5} {'max span':>9} {'media-s/s':>10}"
    )
    result = {}
    for label, path in clips.items():
        methods = (("raw segment -c copy", raw_segment), ("chunk_video", ours))
        walls: dict[str, list[float]] = {method: [] for method, _ in methods}
        spans: dict[str, list[float]] = {}
        PROFILES.clear()
        for _ in range(repeats):  # alternating, so a change in the machine's load hits both
            for method, run in methods:
                with tempfile.TemporaryDirectory(dir=work) as scratch:
                    wall, spans[method] = run(tool, path, scratch)
                walls[method].append(wall)
        speed = {}
        for method, _ in methods:
            over = sum(s > LIMIT for s in spans[method])
            speed[method] = (seconds / min(walls[method]), over)
            print(f"  {label:28} {method:22} {len(spans[method]):6d} {over:5d} "
                  f"{max(spans[method]):8.2f}s {speed[method][0]:10.0f}")
        if label.startswith("h264 640x360, GOP"):
            print_profile(seconds / speed["raw segment -c copy"][0])
            result = {"ours": speed["chunk_video"][0], "raw": speed["raw segment -c copy"][0],
                      "over": speed["chunk_video"][1], "raw_over": speed["raw segment -c copy"][1]}
    return result


def raw_pdf_split(path: str, step: int) -> None:
    reader = PdfReader(path)
    for first in range(0, len(reader.pages), step):
        writer = PdfWriter()
        for index in range(first, min(first + step, len(reader.pages))):
            writer.add_page(reader.pages[index])
        writer.write(io.BytesIO())


def best_wall(run, repeats: int = 3) -> float:
    """Best of a few runs: PDF splits take ~0.1 s, so one run is mostly noise."""
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        walls.append(time.perf_counter() - started)
    return min(walls)


def bench_pdf(pages: int, work: str) -> None:
    path = mf.text_pdf(f"{work}/bench.pdf", pages)
    step = SETTINGS.limits.pdf_pages
    raw = best_wall(lambda: raw_pdf_split(path, step))
    mine = best_wall(lambda: sum(1 for _ in chunk_pdf(source(path, "pdf"), path, SETTINGS)))
    print(f"pdf: {pages} pages, chunks of <= {step} pages (best of 3)")
    print(f"  raw pypdf split   {pages / raw:8.0f} pages/s")
    print(f"  chunk_pdf         {pages / mine:8.0f} pages/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="length of each video clip")
    parser.add_argument("--pages", type=int, default=300, help="pages of the PDF")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each video method (best counts)")
    parser.add_argument("--rows-json", help="write this script's bench-results rows here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="embedpipe-bench-") as work:
        video = bench_video(args.seconds, work, args.repeats)
        bench_pdf(args.pages, work)
    ratio = video["ours"] / video["raw"]
    print(f"video ratio: {ratio:.2f}x of raw segment -c copy ({video['over']} over-limit chunks; "
          f"raw: {video['raw_over']})")
    save_rows(args.rows_json, [row(
        "video_chunking_vs_raw_ffmpeg_segment_copy", video["ours"], video["raw"], ratio,
        "ratio >= 0.5 (media-seconds per wall-second, GOP 16.7 s), 0 over-limit chunks",
        ratio >= 0.5 and video["over"] == 0, int(args.seconds))])


if __name__ == "__main__":
    main()
