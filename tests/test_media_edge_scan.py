"""Edge scans (each stream's first packets and last seconds, in containers that seek by
index) give exactly the extents a full packet scan gives, or step aside: the chunks of a
video cannot depend on which of the two read it."""
from __future__ import annotations

import os
import subprocess

import pytest

import media_factory as mf
from test_media_video_scan import audio_longer_than_video
from transforms.media import ffmpeg_tools
from transforms.media.ffmpeg_tools import FfmpegTool
from transforms.media.video import chunk_video
from transforms.types import SourceObject

pytestmark = pytest.mark.slow  # real ffmpeg

SELECTORS = ["V:0?", "a:0?"]
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]


def ffmpeg(*args) -> None:
    subprocess.run([mf.FFMPEG, "-v", "error", "-y", "-nostdin", *map(str, args)], check=True)


def lavfi(seconds: float, rate: int = mf.RATE) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={mf.SIZE}:rate={rate}",
            "-f", "lavfi", "-i", "sine=frequency=440", "-t", str(seconds)]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Files the edges must read exactly (``vouched``) and files they must hand over to a
    full scan (``refused``: truncated, or audio ending long before the file does)."""
    d = tmp_path_factory.mktemp("edges")
    plain = mf.h264_mp4(d / "plain.mp4", 14)
    vouched = {
        "h264 + aac, B-frames": plain,
        "b-pyramid, 8 B-frames, open GOP": (
            ffmpeg(*lavfi(14), *X264, "-bf", 8, "-x264-params", "b-pyramid=normal:open-gop=1:keyint=45",
                   "-c:a", "aac", d / "pyramid.mp4") or str(d / "pyramid.mp4")),
        "hevc": mf.hevc_mp4(d / "hevc.mp4", 12),
        "quicktime": mf.h264_mov(d / "qt.mov", 12),
        "vp9 + opus, webm": mf.vp9_webm(d / "vp9.webm", 12),
        "matroska": ffmpeg("-i", plain, "-c", "copy", d / "plain.mkv") or str(d / "plain.mkv"),
        "fragmented mp4": (ffmpeg("-i", plain, "-c", "copy", "-movflags", "frag_keyframe+empty_moov",
                                  d / "frag.mp4") or str(d / "frag.mp4")),
        "cut at 3.3 s by copy: non-zero start, edit lists": (
            ffmpeg("-ss", 3.3, "-i", plain, "-c", "copy", d / "cut.mp4") or str(d / "cut.mp4")),
        "offset by 1.51 s: start 1.488667, rounded per time base": (
            ffmpeg("-i", plain, "-c", "copy", "-output_ts_offset", 1.51, d / "offset.mp4")
            or str(d / "offset.mp4")),
        "first piece of a segment cut: start 0.112": (
            ffmpeg("-i", plain, "-map", "0:V:0", "-map", "0:a:0", "-c", "copy", "-f", "segment",
                   "-segment_times", "9.99,30", "-segment_format", "mp4", "-reset_timestamps", 1,
                   d / "piece%d.mp4") or str(d / "piece0.mp4")),
        "variable frame rate": (
            ffmpeg(*lavfi(14), "-vf", "setpts='(N+floor(N/3)*0.5)/15/TB'", "-fps_mode", "vfr", *X264,
                   "-c:a", "aac", d / "vfr.mp4") or str(d / "vfr.mp4")),
        "60 fps": ffmpeg(*lavfi(12, rate=60), *X264, "-c:a", "aac", d / "60.mp4") or str(d / "60.mp4"),
        "audio runs 2 s past the video": audio_longer_than_video(d / "longer.mp4", 10, 12),
        "audio only, m4a": mf.audio_file(d / "a.m4a", 12),
        "video only": mf.h264_mp4(d / "silent.mp4", 12, audio=False),
    }
    refused = {
        "truncated (faststart, second half lost)": mf.truncated_mp4(d / "trunc.mp4", plain),
        "audio ends 8 s before the video": (
            ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={mf.SIZE}:rate={mf.RATE}:duration=14",
                   "-f", "lavfi", "-i", "sine=frequency=440:duration=6", *X264, "-c:a", "aac",
                   d / "short_audio.mp4") or str(d / "short_audio.mp4")),
        "2 fps: fewer video packets than the edges need": (
            ffmpeg(*lavfi(12, rate=2), *X264, "-c:a", "aac", d / "2fps.mp4") or str(d / "2fps.mp4")),
    }
    return vouched, refused


def tool() -> FfmpegTool:
    return FfmpegTool(mf.FFMPEG, 60)


def full_probe(monkeypatch, path):
    with monkeypatch.context() as m:
        m.setattr(ffmpeg_tools, "_seeks_by_index", lambda *_: False)
        return tool().probe_and_scan(path)


def test_edge_spans_equal_full_scans_or_step_aside(media):
    vouched, refused = media
    t = tool()
    files = list(vouched.values())
    full = t.scan_packets_many(files, SELECTORS)
    for name, scan, edge in zip(vouched, full, t._edge_scans(files, SELECTORS)):
        assert edge is not None and edge.streams == scan.streams, name
    files += list(refused.values())
    assert t._edge_scans(list(refused.values()), SELECTORS) == [None] * len(refused)
    assert t.scan_spans_many(files, SELECTORS) == [
        ffmpeg_tools.PacketScan(s.streams, ()) for s in t.scan_packets_many(files, SELECTORS)
    ]


def test_probe_reads_audio_at_its_edges_with_the_same_result(media, monkeypatch, tmp_path):
    vouched, refused = media
    t = tool()
    for name, path in vouched.items():
        expected = full_probe(monkeypatch, path)
        assert t.probe_and_scan(path) == expected, name
        edged = t._probe_with_audio_edges(path, str(tmp_path))
        assert edged == (None if name == "audio only, m4a" else expected), name
    truncated = refused["truncated (faststart, second half lost)"]
    assert t._probe_with_audio_edges(truncated, str(tmp_path)) is None
    for name, path in refused.items():
        expected = full_probe(monkeypatch, path)
        found = t.probe_and_scan(path)
        assert (found[0], repr(found[1])) == (expected[0], repr(expected[1])), name


def test_chunks_are_the_same_whichever_scan_reads_the_pieces(tmp_path, monkeypatch):
    """Forty seconds cut into pieces under the small limits: the same chunk ids and bytes
    with edge scans, with full scans only, when the edge run fails outright, and when the
    batched full scan after it fails too."""
    settings = mf.small_settings()
    path = mf.h264_mp4(str(tmp_path / "v.mp4"), 40, gop=30)
    source = SourceObject(f"file://{path}", os.path.getsize(path), "1", "video")

    def chunks():
        return [(c.chunk_id, c.locator, c.parts) for c in chunk_video(source, path, settings)]

    edged = chunks()
    assert len(edged) > 2
    with monkeypatch.context() as m:
        m.setattr(ffmpeg_tools, "_seeks_by_index", lambda *_: False)
        assert chunks() == edged
    original = FfmpegTool._execute

    def edge_runs_fail(self, stream, timeout, loglevel):
        if "-sseof" in stream.get_args():
            return 1, "[fatal] simulated failure of an edge run\n"
        return original(self, stream, timeout, loglevel)

    monkeypatch.setattr(FfmpegTool, "_execute", edge_runs_fail)
    assert chunks() == edged
    batched = FfmpegTool.scan_packets_many

    def batched_scans_fail(self, paths, selectors):
        if len(paths) > 1:
            raise ffmpeg_tools.FfmpegError("simulated failure of the batched scan")
        return batched(self, paths, selectors)

    monkeypatch.setattr(FfmpegTool, "scan_packets_many", batched_scans_fail)
    assert chunks() == edged  # then each piece is scanned on its own
