"""Benchmark the media chunkers against the naive one-liners they replace.

Video: ``chunk_video`` vs raw ``ffmpeg -f segment -c copy -segment_time T`` (T = limit −
margin) on the same generated clips, in media-seconds per wall-second, with how many pieces
of each exceed the limit by packet span. PDF: ``chunk_pdf`` vs a bare pypdf split, in pages
per second. Media is generated with ``tests/media_factory.py`` into a temporary directory.

    .venv/bin/python scripts/bench_chunking.py [--seconds 300] [--pages 300]
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

import media_factory as mf  # noqa: E402
from pypdf import PdfReader, PdfWriter  # noqa: E402

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


def ours(tool: FfmpegTool, path: str, work: str) -> tuple[float, list[float]]:
    started = time.perf_counter()
    payloads = [
        c.parts[0]["inline_data"]["data"]
        for c in chunk_video(source(path, "video"), path, SETTINGS)
    ]
    wall = time.perf_counter() - started
    return wall, [span_of(tool, base64.b64decode(p), work) for p in payloads]


def bench_video(seconds: float, work: str) -> None:
    tool = FfmpegTool.from_settings(SETTINGS)
    clips = {
        "h264 640x360, GOP 16.7 s": mf.h264_mp4(
            f"{work}/gop.mp4", seconds, gop=250, size="640x360"
        ),
        "h264 640x360, 1 keyframe": mf.long_gop_mp4(f"{work}/onekey.mp4", seconds, size="640x360"),
    }
    print(f"video: limit {LIMIT:.0f} s (with audio), target {TARGET:.0f} s, {seconds:.0f} s clips")
    print(
        f"  {'clip':28} {'method':22} {'chunks':>6} {'over':>5} {'max span':>9} {'media-s/s':>10}"
    )
    for label, path in clips.items():
        for method, run in (("raw segment -c copy", raw_segment), ("chunk_video", ours)):
            with tempfile.TemporaryDirectory(dir=work) as scratch:
                wall, spans = run(tool, path, scratch)
            over = sum(s > LIMIT for s in spans)
            print(
                f"  {label:28} {method:22} {len(spans):6d} {over:5d} {max(spans):8.2f}s {seconds / wall:10.0f}"
            )


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="embedpipe-bench-") as work:
        bench_video(args.seconds, work)
        bench_pdf(args.pages, work)


if __name__ == "__main__":
    main()
