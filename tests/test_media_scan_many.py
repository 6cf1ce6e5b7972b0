"""One ffmpeg run scans a pass's pieces: the scans equal one run per file, and a broken
piece does not cost the good pieces cut before it."""
from __future__ import annotations

import pytest

import media_factory as mf
from transforms.media.ffmpeg_tools import FfmpegError, FfmpegTool
from transforms.media.video import chunk_video
from transforms.types import SourceObject

pytestmark = pytest.mark.slow  # real ffmpeg


def test_scan_packets_many_equals_one_scan_per_file(tmp_path):
    settings = mf.small_settings()
    tool = FfmpegTool.from_settings(settings)
    files = [mf.h264_mp4(str(tmp_path / "a.mp4"), 6), mf.audio_file(str(tmp_path / "b.wav"), 4),
             mf.vp9_webm(str(tmp_path / "c.webm"), 5)]
    selectors = ["V:0?", "a:0?"]
    assert tool.scan_packets_many(files, selectors) == [tool.scan_packets(f, selectors) for f in files]
    with pytest.raises(FfmpegError):
        tool.scan_packets_many([files[0], mf.text_file(str(tmp_path / "x.mp4"))], selectors)


def test_video_chunks_are_the_same_when_the_batched_scan_fails(tmp_path, monkeypatch):
    """A failed batched scan falls back to one scan per piece: same chunks, same bytes."""
    settings = mf.small_settings()
    path = mf.h264_mp4(str(tmp_path / "v.mp4"), 40, gop=50)
    source = SourceObject(f"file://{path}", 1, "1", "video")
    batched = [c.parts for c in chunk_video(source, path, settings)]

    original = FfmpegTool.scan_packets_many

    def batched_fails(self, paths, selectors):
        if len(paths) > 1:
            raise FfmpegError("simulated failure of the batched scan")
        return original(self, paths, selectors)

    monkeypatch.setattr(FfmpegTool, "scan_packets_many", batched_fails)
    assert len(batched) > 1
    assert [c.parts for c in chunk_video(source, path, settings)] == batched
