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
from transforms.settings import ChunkSettings
from transforms.types import SourceObject

pytestmark = pytest.mark.slow  # real ffmpeg

SELECTORS = ["V:0?", "a:0?"]
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]


def ffmpeg(*args) -> None:
    subprocess.run([mf.FFMPEG, "-v", "error", "-y", "-nostdin", *map(str, args)], check=True)


def lavfi(seconds: float, rate: int = mf.RATE) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={mf.SIZE}:rate={rate}",
            "-f", "lavfi", "-i", "sine=frequency=440", "-t", str(seconds)]


def made(path, *args) -> str:
    ffmpeg(*args, path)
    return str(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Files the edges must read exactly (``vouched``), files they must hand over to a
    full scan (``refused``), and odd ones where only the end result is pinned (``either``)."""
    d = tmp_path_factory.mktemp("edges")
    plain = mf.h264_mp4(d / "plain.mp4", 14)
    vouched = {
        "h264 + aac, B-frames": plain,
        "b-pyramid, 8 B-frames, open GOP": made(
            d / "pyramid.mp4", *lavfi(14), *X264, "-bf", 8,
            "-x264-params", "b-pyramid=normal:open-gop=1:keyint=45", "-c:a", "aac"),
        "hevc": mf.hevc_mp4(d / "hevc.mp4", 12),
        "quicktime": mf.h264_mov(d / "qt.mov", 12),
        "vp9 + aac in mp4": made(d / "vp9.mp4", "-i", mf.vp9_webm(d / "vp9.webm", 12),
                                 "-c:v", "copy", "-c:a", "aac"),
        "fragmented mp4": made(d / "frag.mp4", "-i", plain, "-c", "copy",
                               "-movflags", "frag_keyframe+empty_moov"),
        "cut at 3.3 s by copy: edit lists": made(d / "cut.mp4", "-ss", 3.3, "-i", plain, "-c", "copy"),
        "offset by 1.51 s: start 1.488667": made(d / "offset.mp4", "-i", plain, "-c", "copy",
                                                 "-output_ts_offset", 1.51),
        "first piece of a segment cut: start 0.112": (
            ffmpeg("-i", plain, "-map", "0:V:0", "-map", "0:a:0", "-c", "copy", "-f", "segment",
                   "-segment_times", "9.99,30", "-segment_format", "mp4", "-reset_timestamps", 1,
                   d / "piece%d.mp4") or str(d / "piece0.mp4")),
        "variable frame rate": made(
            d / "vfr.mp4", *lavfi(14), "-vf", "setpts='(N+floor(N/3)*0.5)/15/TB'", "-fps_mode", "vfr",
            *X264, "-c:a", "aac"),
        "60 fps": made(d / "60.mp4", *lavfi(12, rate=60), *X264, "-c:a", "aac"),
        "audio runs 2 s past the video": audio_longer_than_video(d / "longer.mp4", 10, 12),
    }
    refused = {
        "truncated (faststart, second half lost)": mf.truncated_mp4(d / "trunc.mp4", plain),
        "audio ends 8 s before the video": made(
            d / "short_audio.mp4", "-f", "lavfi", "-i", f"testsrc2=size={mf.SIZE}:rate={mf.RATE}:duration=14",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=6", *X264, "-c:a", "aac"),
        "audio only from 5 s to 9 s of 14 s": made(
            d / "mid_audio.mp4", *lavfi(14)[:6], "-itsoffset", 5, "-f", "lavfi", "-i",
            "sine=frequency=300:duration=4", "-map", "0:v", "-map", "1:a", "-t", 14, *X264, "-c:a", "aac"),
        "2 fps: fewer video packets than the edges need": made(
            d / "2fps.mp4", *lavfi(12, rate=2), *X264, "-c:a", "aac"),
        "matroska: a block's duration is its own": made(d / "plain.mkv", "-i", plain, "-c", "copy"),
        "webm": mf.vp9_webm(d / "vp9b.webm", 12),
    }
    either = {
        "negative start": made(d / "neg.mp4", "-i", plain, "-c", "copy", "-output_ts_offset", -2.3457),
        "audio only, m4a": mf.audio_file(d / "a.m4a", 12),
        "video only": mf.h264_mp4(d / "silent.mp4", 12, audio=False),
    }
    return vouched, refused, either


def tool() -> FfmpegTool:
    return FfmpegTool(mf.FFMPEG, 60)


def full_probe(monkeypatch, path):
    with monkeypatch.context() as m:
        m.setattr(ffmpeg_tools, "_edge_candidate", lambda *_: False)
        return tool().probe_and_scan(path)


def test_edge_spans_equal_full_scans_or_step_aside(media):
    vouched, refused, either = media
    t = tool()
    files = list(vouched.values())
    full = t.scan_packets_many(files, SELECTORS)
    for name, scan, edge in zip(vouched, full, t._edge_scans(files, SELECTORS)):
        assert edge is not None and edge.streams == scan.streams, name
    for name, path in refused.items():
        assert t._edge_scans([path], SELECTORS) == [None], name
    files += list(refused.values()) + list(either.values())
    assert t.scan_spans_many(files, SELECTORS) == [
        ffmpeg_tools.PacketScan(s.streams, ()) for s in t.scan_packets_many(files, SELECTORS)
    ]


def test_probe_reads_audio_at_its_edges_with_the_same_result(media, monkeypatch, tmp_path):
    vouched, refused, either = media
    t = tool()
    for name, path in vouched.items():
        expected = full_probe(monkeypatch, path)
        assert t.probe_and_scan(path) == expected, name
        assert t._probe_with_audio_edges(path, str(tmp_path)) == expected, name
    for name, path in {**refused, **either}.items():
        expected = full_probe(monkeypatch, path)
        found = t.probe_and_scan(path)
        assert (found[0], repr(found[1])) == (expected[0], repr(expected[1])), name
    for name in ("truncated (faststart, second half lost)", "audio only from 5 s to 9 s of 14 s",
                 "matroska: a block's duration is its own"):
        assert t._probe_with_audio_edges(refused[name], str(tmp_path)) is None, name


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
        m.setattr(ffmpeg_tools, "_edge_candidate", lambda *_: False)
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


def test_pieces_of_a_source_whose_frames_are_shown_late_are_scanned_in_full(tmp_path, monkeypatch):
    """B-frames across a 20 s timestamp gap (a paused recording): a frame is shown 20 s
    after it is decoded, so a piece's last seconds need not hold its end. The source's scan
    measures that, and its pieces then get full scans; a plain source's pieces do not."""
    gap = made(tmp_path / "gap.mkv", *lavfi(40), "-vf", "setpts='if(gte(T,15),PTS+20/TB,PTS)'",
               "-af", "asetpts='if(gte(T,15),PTS+20/TB,PTS)'", *X264, "-c:a", "aac")
    late = made(tmp_path / "gap.mp4", "-i", gap, "-c", "copy")
    plain = mf.h264_mp4(tmp_path / "plain.mp4", 40)
    assert tool().probe_and_scan(late)[1].video_reorder > ffmpeg_tools.EDGE_MAX_REORDER
    assert tool().probe_and_scan(plain)[1].video_reorder < 1
    edged = []
    original = FfmpegTool.scan_spans_many

    def recorded(self, paths, selectors):
        edged.extend(paths)
        return original(self, paths, selectors)

    monkeypatch.setattr(FfmpegTool, "scan_spans_many", recorded)
    settings = ChunkSettings(limits=mf.PRODUCTION_LIMITS)
    for path in (late, plain):
        source = SourceObject(f"file://{path}", os.path.getsize(path), "1", "video")
        assert list(chunk_video(source, path, settings))
        assert bool(edged) == (path == plain), path
