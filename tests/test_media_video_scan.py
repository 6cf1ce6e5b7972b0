"""One ffmpeg run reads a file's header and packets; the cut pieces are still verified by
scanning the pieces themselves. Boundaries are pinned against what ffmpeg's decoder (not
the packet scan) reports as keyframes, and a piece whose audio runs past its video cannot
pass as the short piece the segment muxer's own list says it is."""
from __future__ import annotations

import csv
import os
import re
import subprocess

import pytest

import media_factory as mf
from independent_probes import mp4_tracks, part_bytes
from transforms.media import ffmpeg_tools
from transforms.media.ffmpeg_tools import FfmpegError, FfmpegTool, PacketScanError
from transforms.media.timed_media import CutSpec, Window, cut_windows
from transforms.media.video import chunk_video
from transforms.types import SourceObject

pytestmark = pytest.mark.slow  # real ffmpeg


def tool() -> FfmpegTool:
    return FfmpegTool(mf.FFMPEG, 60)


def audio_longer_than_video(path, video_seconds: float, audio_seconds: float) -> str:
    """H.264 video (a keyframe every 2 s) with an AAC track that runs on after it."""
    subprocess.run(
        [mf.FFMPEG, "-v", "error", "-y", "-nostdin",
         "-f", "lavfi", "-i", f"testsrc2=size={mf.SIZE}:rate={mf.RATE}:duration={video_seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={audio_seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-x264-params", f"keyint={2 * mf.RATE}:min-keyint={2 * mf.RATE}:scenecut=0",
         "-c:a", "aac", str(path)],
        check=True,
    )
    return str(path)


def decoded_keyframe_times(path: str) -> list[float]:
    """Keyframe times from decoding only keyframes (``showinfo``), not from a packet scan."""
    log = subprocess.run(
        [mf.FFMPEG, "-hide_banner", "-nostdin", "-skip_frame", "nokey", "-i", path,
         "-map", "0:V:0", "-vf", "showinfo", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr
    return [float(t) for t in re.findall(r"pts_time:([-\d.]+)", log)]


def test_one_run_equals_the_header_probe_and_the_packet_scan(tmp_path):
    files = {
        "video+audio": mf.h264_mp4(tmp_path / "a.mp4", 6),
        "video only": mf.h264_mp4(tmp_path / "b.mp4", 5, audio=False),
        "webm": mf.vp9_webm(tmp_path / "c.webm", 5),
        "wav": mf.audio_file(tmp_path / "d.wav", 4),
        "m4a": mf.audio_file(tmp_path / "e.m4a", 4),
        "audio longer": audio_longer_than_video(tmp_path / "f.mp4", 4, 7),
    }
    t = tool()
    for name, path in files.items():
        info = mf.probe_header(path)
        selectors = [s for s, present in (("V:0", info.video), ("a:0", info.audio)) if present]
        assert t.probe_and_scan(path) == (info, t.scan_packets(path, selectors)), name
    with pytest.raises(FfmpegError, match="could not open"):
        t.probe_and_scan(mf.text_file(str(tmp_path / "x.mp4")))
    subtitles = mf.write_bytes(tmp_path / "s.srt", b"1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    info, scan = t.probe_and_scan(subtitles)
    assert (info.video, info.audio, scan) == (None, None, None)


def test_a_failed_scan_reports_the_error_level_lines_only():
    log = (
        "[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:x.mp4':\n"
        "[info]   Duration: 00:00:04.00, start: 0.000000, bitrate: 100 kb/s\n"
        "[in#0 @ 0x1] [warning] a warning\n"
        "[h264 @ 0x2] [error] first error\n"
        "  its second line\n"
        "[fatal] Conversion failed!\n"
    )
    assert ffmpeg_tools._untagged(log, ffmpeg_tools._ERROR_LEVELS) == (
        "[h264 @ 0x2] first error\n  its second line\nConversion failed!\n"
    )
    assert ffmpeg_tools._untagged(log).startswith("Input #0, mov")
    error = PacketScanError("ffmpeg exited with 1", ffmpeg_tools._untagged(log, ffmpeg_tools._ERROR_LEVELS))
    assert error.reason() == "first error; its second line; Conversion failed!"


def test_boundaries_are_the_keyframes_ffmpeg_decodes(tmp_path):
    """29 s without audio (limit 12 s, target 11 s), a keyframe every 2 s: the balanced
    plan is 0-10, 10-20, 20-29 (ideal ends 9.67 and 19.5, snapped to keyframes)."""
    path = mf.h264_mp4(tmp_path / "v.mp4", 29, audio=False)
    keyframes = decoded_keyframe_times(path)
    assert keyframes == [float(t) for t in range(0, 29, 2)]
    source = SourceObject(f"file://{path}", os.path.getsize(path), "1", "video")
    chunks = list(chunk_video(source, path, mf.small_settings()))
    assert [(c.locator.start, c.locator.end) for c in chunks] == [(0.0, 10.0), (10.0, 20.0), (20.0, 29.0)]
    assert {c.locator.start for c in chunks} <= set(keyframes)
    (video,) = mp4_tracks(open(path, "rb").read())
    assert chunks[-1].locator.end == pytest.approx(video.seconds, abs=1e-3)
    for chunk in chunks:
        (piece,) = mp4_tracks(part_bytes(chunk))
        assert piece.first_sample_is_sync
        assert piece.seconds == pytest.approx(chunk.locator.end - chunk.locator.start, abs=1e-3)


def test_a_piece_whose_audio_outruns_its_video_is_re_cut(tmp_path):
    """The second piece of this cut carries 2 s of video and 10 s of audio. The segment
    muxer lists it as 2 s (its times follow the video), matching the plan, so only a
    scan of the piece itself shows it is over the limit."""
    path = audio_longer_than_video(tmp_path / "v.mp4", 6, 16)
    spec = CutSpec(
        streams=("V:0", "a:0"),
        output_args={"c:v": "copy", "c:a": "copy"},
        segment_format="mp4",
        max_seconds=8,
        max_bytes=10**9,
        recut_ladder=({"c:v": "libx264", "preset": "veryfast", "c:a": "aac"},),
    )
    windows = [Window(0.0, 4.0), Window(4.0, 6.0)]

    listed = tmp_path / "listed"
    listed.mkdir()
    subprocess.run(
        [mf.FFMPEG, "-v", "error", "-nostdin", "-i", path, "-map", "0:V:0", "-map", "0:a:0",
         "-c", "copy", "-f", "segment", "-segment_times", "3.99,7", "-reset_timestamps", "1",
         "-segment_list", str(listed / "list.csv"), str(listed / "p%d.mp4")],
        check=True,
    )
    rows = list(csv.reader(open(listed / "list.csv")))
    assert float(rows[1][2]) - float(rows[1][1]) == pytest.approx(2.0, abs=0.1)
    assert max(t.seconds for t in mp4_tracks((listed / "p1.mp4").read_bytes())) > 8

    pieces = {}
    for window, piece in cut_windows(tool(), path, windows, [0.0, 2.0, 4.0], spec, str(tmp_path)):
        pieces[window] = mp4_tracks(open(piece, "rb").read())
    assert list(pieces) == windows
    for window, tracks in pieces.items():
        assert max(t.seconds for t in tracks) <= spec.max_seconds, (window, tracks)
    assert max(t.seconds for t in pieces[windows[1]]) == pytest.approx(2.0, abs=0.1)
