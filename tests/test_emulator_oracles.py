"""The emulator judges requests with its own code, so "the emulator accepted it" is evidence.

It must not import the pipeline's token estimator or media tools to decide what it
accepts and bills; its container parser must agree with what the files really hold
(checked here against the pipeline's ffmpeg packet scan and the tests' own probes: two
or three independent readings of the same bytes) and refuse what is not a complete
MP4/MOV, MP3 or WAV file.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

import media_factory as mf
from conftest import PINNED_FFMPEG
from independent_probes import mp3_seconds, mp4_tracks, wav_seconds
from pipeline.emulator.containers import ContainerError, parse
from transforms.media.ffmpeg_tools import FfmpegTool

PACKET_SPAN_TOLERANCE_S = 0.002


def test_the_emulator_imports_nothing_of_the_pipelines_judges():
    code = ("import sys; import pipeline.emulator, pipeline.emulator.vectors; "
            "print(sorted(m for m in sys.modules if m.startswith('transforms')))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    for judge in ("transforms.tokens", "transforms.media", "transforms.chunk"):
        assert judge not in loaded, loaded


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("containers")
    paths = {
        "h264_aac.mp4": mf.h264_mp4(d / "a.mp4", seconds=5),
        "h264_silent.mp4": mf.h264_mp4(d / "s.mp4", seconds=4, audio=False),
        "long_gop.mp4": mf.long_gop_mp4(d / "g.mp4", seconds=6),
        "camera.mov": mf.h264_mov(d / "c.mov", seconds=3),
        "tone.mp3": mf.audio_file(d / "t.mp3", seconds=3.3),
        "tone.wav": mf.audio_file(d / "t.wav", seconds=2.5),
        "tone.m4a": mf.audio_file(d / "t.m4a", seconds=3),
    }
    return {name: open(path, "rb").read() for name, path in paths.items()}


@pytest.mark.parametrize("name", ["h264_aac.mp4", "h264_silent.mp4", "long_gop.mp4", "camera.mov",
                                  "tone.mp3", "tone.wav", "tone.m4a"])
def test_spans_agree_with_the_pipelines_packet_scan(media, name, tmp_path):
    path = tmp_path / name
    path.write_bytes(media[name])
    scan = FfmpegTool(PINNED_FFMPEG, 60).scan_packets(str(path), ["V:0?", "a:0?"])
    container = parse(media[name])
    for kind in ("video", "audio"):
        ours = container.first(kind)
        theirs = next((s for s in scan.streams if s.kind == kind and s.end > s.start), None)
        assert (ours is None) == (theirs is None), kind
        if ours is not None:  # MP3 encoder delay shifts ffmpeg's timeline, not the span
            assert ours.seconds == pytest.approx(theirs.end - theirs.start, abs=PACKET_SPAN_TOLERANCE_S)
            if container.format == "mp4":  # edit lists: pre-roll before 0 counts in both
                assert ours.start == pytest.approx(theirs.start, abs=PACKET_SPAN_TOLERANCE_S), kind
    video = container.first("video")
    if video is not None:
        assert video.keyframes == pytest.approx(scan.keyframes, abs=PACKET_SPAN_TOLERANCE_S)


def test_durations_agree_with_the_tests_own_probes(media):
    assert parse(media["tone.wav"]).first("audio").seconds == pytest.approx(wav_seconds(media["tone.wav"]))
    # the tests' frame walk counts the Xing header frame, a decoder does not
    frame = 1152 / 44100
    assert parse(media["tone.mp3"]).first("audio").seconds == pytest.approx(
        mp3_seconds(media["tone.mp3"]) - frame, abs=1e-6)
    for name in ("h264_aac.mp4", "camera.mov"):
        by_handler = {t.handler: t.seconds for t in mp4_tracks(media[name])}
        container = parse(media[name])
        assert container.first("video").seconds == pytest.approx(by_handler["vide"], abs=0.05)
        assert container.first("audio").seconds == pytest.approx(by_handler["soun"], abs=0.05)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"definitely not audio " * 50, "unsupported container"),
    (b"\x00\x00\x00\x18ftypmp42" + bytes(5000), "not a complete MP4"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "no WAV data"),
    (b"\xff\xfb\xff\xff" * 100, "no MPEG audio layer III frame"),
])
def test_what_is_not_a_complete_file_is_refused(data, reason):
    with pytest.raises(ContainerError, match=reason):
        parse(data)


def test_a_truncated_mp4_is_refused(media):
    data = media["h264_aac.mp4"]
    with pytest.raises(ContainerError, match="truncated"):
        parse(data[: len(data) // 2])


def test_a_container_that_lies_about_its_duration_is_measured_by_its_samples(media):
    """A movie header claiming hours changes nothing: the sample tables count."""
    data = bytearray(media["h264_silent.mp4"])
    mvhd = data.index(b"mvhd")
    version = data[mvhd + 4]
    offset = mvhd + 4 + (24 if version == 1 else 16)
    data[offset:offset + 4] = (10_000_000).to_bytes(4, "big")  # the movie header now claims hours
    assert parse(bytes(data)).first("video").seconds == pytest.approx(4.0, abs=0.01)
