"""Video chunking on generated clips, checked by an independent MP4 box parser."""
from __future__ import annotations

import logging
import math
import os
import tempfile

import ffmpeg
import pytest
from hypothesis import given
from hypothesis import strategies as st

import media_factory as mf
from independent_probes import mp4_tracks, part_bytes
from transforms.chunk_errors import ChunkingError
from transforms.media import ffmpeg_tools
from transforms.media.ffmpeg_tools import FfmpegError, FfmpegTool, parse_header, resolve_ffmpeg
from transforms.media.timed_media import (
    Window,
    disjoint_groups,
    ffmpeg_failures_as_chunking_errors,
    plan_windows,
)
from transforms.media.video import chunk_video
from transforms.types import SourceObject

LIMITS = mf.SMALL_LIMITS
TARGET_WITH_AUDIO = LIMITS.video_with_audio_seconds - LIMITS.duration_margin_seconds
VIDEO_CODECS = {"avc1", "hvc1", "vp09", "av01"}


def source_for(path: str, generation: str = "1") -> SourceObject:
    return SourceObject(
        uri=f"gs://bucket/{os.path.basename(path)}",
        size_bytes=os.path.getsize(path),
        generation=generation,
        detected_type="video",
    )


def chunks_of(path: str, **settings):
    return list(chunk_video(source_for(path), path, mf.small_settings(**settings)))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("video")
    h264 = mf.h264_mp4(d / "h264.mp4", 30)
    return {
        "h264": h264,
        "h264_noaudio": mf.h264_mp4(d / "noaudio.mp4", 30, audio=False),
        "mov": mf.h264_mov(d / "clip.mov", 20),
        "hevc": mf.hevc_mp4(d / "hevc.mp4", 20),
        "vp9": mf.vp9_webm(d / "vp9.webm", 25),
        "mpeg4_avi": mf.mpeg4_avi(d / "mpeg4.avi", 25),
        "long_gop": mf.long_gop_mp4(d / "longgop.mp4", 30),
        "truncated": mf.truncated_mp4(d / "truncated.mp4", h264, faststart=True),
        "moov_lost": mf.truncated_mp4(d / "moovlost.mp4", h264, faststart=False),
        "zero": mf.write_bytes(d / "zero.mp4", b""),
        "text": mf.text_file(d / "text.mp4"),
        "m4a": mf.audio_file(d / "sound.m4a", 12),
        "short": mf.h264_mp4(d / "short.mp4", 4),
    }


# --- planning (pure) ---------------------------------------------------------------------

def test_plan_is_balanced_without_keyframes():
    windows = plan_windows(30.0, 9.0)
    assert [round(w.duration, 6) for w in windows] == [7.5] * 4
    assert windows[0].start == 0.0 and windows[-1].end == 30.0


def test_plan_snaps_to_keyframes_and_refuses_long_gaps():
    keyframes = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]
    windows = plan_windows(15.0, 9.0, keyframes)
    assert all(w.start in keyframes and w.duration <= 9.0 for w in windows)
    assert plan_windows(30.0, 9.0, [0.0, 20.0]) is None


@given(
    duration=st.floats(0.5, 500.0),
    target=st.floats(1.0, 100.0),
    gaps=st.lists(st.floats(0.05, 30.0), max_size=60),
    overlap_fraction=st.floats(0.0, 0.45),
)
def test_plan_properties(duration, target, gaps, overlap_fraction):
    keyframes = sorted({round(sum(gaps[: i + 1]), 6) for i in range(len(gaps))} | {0.0})
    keyframes = [k for k in keyframes if k < duration]
    overlap = target * overlap_fraction
    windows = plan_windows(duration, target, keyframes, overlap)
    points = keyframes + [duration]
    longest_gap = max(b - a for a, b in zip(points, points[1:])) if len(points) > 1 else duration
    if windows is None:
        assert longest_gap > target  # copy is impossible only if some GOP is too long
        return
    assert windows[0].start == 0.0 and windows[-1].end == duration
    for previous, window in zip(windows, windows[1:]):
        assert previous.start < window.start <= previous.end  # progress, no holes
    for window in windows:
        assert window.duration <= target + 1e-9
        assert window.start in keyframes and (window.end in keyframes or window.end == duration)
    free = plan_windows(duration, target)
    assert len(free) == max(1, math.ceil(duration / target))  # balanced: no extra window


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0.1, 20)), min_size=1, max_size=30))
def test_disjoint_groups_never_overlap(spans):
    windows = sorted(Window(s, s + d) for s, d in spans)
    groups = disjoint_groups(windows)
    assert sorted(w for g in groups for w in g) == windows
    for group in groups:
        assert all(a.end <= b.start for a, b in zip(group, group[1:]))


# --- ffmpeg tools ------------------------------------------------------------------------

def test_resolve_ffmpeg_order(monkeypatch):
    monkeypatch.delenv(ffmpeg_tools.ENV_FFMPEG, raising=False)
    monkeypatch.setattr(ffmpeg_tools.shutil, "which", lambda name: None)
    assert resolve_ffmpeg() == mf.FFMPEG  # imageio-ffmpeg's bundled binary last
    monkeypatch.setattr(ffmpeg_tools.shutil, "which", lambda name: "/usr/bin/ffmpeg")
    assert resolve_ffmpeg() == "/usr/bin/ffmpeg"
    monkeypatch.setenv(ffmpeg_tools.ENV_FFMPEG, "/opt/env/ffmpeg")
    assert resolve_ffmpeg() == "/opt/env/ffmpeg"
    assert resolve_ffmpeg("/explicit/ffmpeg") == "/explicit/ffmpeg"


def test_parse_header_reads_streams_and_ignores_cover_art():
    header = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/x.mp4':
  Metadata:
    major_brand     : qt  
  Duration: 00:01:02.50, start: 0.000000, bitrate: 381 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9], 307 kb/s, 30 fps, 30 tbr, 15360 tbn (default)
  Stream #0:1[0x2](eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, 5.1, fltp, 64 kb/s (default)
  Stream #0:2: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 300x300 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)
Stream mapping:
  Stream #0:0 -> #0:0 (copy)
"""
    info = parse_header(header)
    assert (info.format_name, info.duration, info.bitrate_kbps) == ("mov,mp4,m4a,3gp,3g2,mj2", 62.5, 381)
    assert (info.video.codec, info.video.pix_fmt, info.video.width, info.video.height) == ("h264", "yuv420p", 1920, 1080)
    assert (info.audio.codec, info.audio.sample_rate, info.audio.channels) == ("aac", 48000, 6)
    assert len(info.streams) == 3 and info.streams[2].attached_pic


def test_parse_framecrc_spans_keyframes_and_hidden_preroll():
    lines = """#tb 0: 1/15360
#media_type 0: video
#tb 1: 1/48000
#media_type 1: audio
0,      -1024,          0,      512,     4555, 0x2d6d5f4c
0,       -512,       1536,      512,     1759, 0xa8006231, F=0x0
1,      -1024,      -1024,     1024,      190, 0xe0115e30, F=0x5, S=1, Skip Samples, 10, 0x00240004
0,          0,        512,      512,      875, 0x1208c003, F=0x0
1,          0,          0,     1024,      235, 0x62287380
0,        512,      30720,      512,      768, 0xc42d7c61
""".splitlines()
    scan = ffmpeg_tools.parse_framecrc(lines)
    assert scan.keyframes == (0.0, 2.0)
    assert scan.start == pytest.approx(-1024 / 48000)  # the discarded priming packet counts
    assert scan.end == pytest.approx(31232 / 15360)
    assert scan.end_of(("audio",)) == pytest.approx(1024 / 48000)


def test_timeout_kills_ffmpeg_and_becomes_media_timeout():
    tool = FfmpegTool(mf.FFMPEG, timeout=0.5)
    endless = ffmpeg.input("testsrc2=size=64x64", f="lavfi").output("-", f="null")
    with pytest.raises(FfmpegError) as caught:
        tool.run(endless)
    assert caught.value.timed_out
    with pytest.raises(ChunkingError) as converted:
        with ffmpeg_failures_as_chunking_errors("probing"):
            tool.run(endless)
    assert converted.value.error_class == "media_timeout"


# --- chunking ----------------------------------------------------------------------------

def assert_within_limits(chunks, source_path, limit, target, expect_audio=True):
    assert chunks
    for chunk in chunks:
        data = part_bytes(chunk)
        assert (chunk.modality, chunk.mime_type) == ("video", "video/mp4")
        assert len(data) <= mf.small_settings().inline_max_bytes
        tracks = mp4_tracks(data)
        kinds = sorted(t.handler for t in tracks)
        assert kinds == (["soun", "vide"] if expect_audio else ["vide"])
        for track in tracks:
            assert track.seconds <= limit, (chunk.locator, track)
            if track.handler == "vide":
                assert track.codec in VIDEO_CODECS and track.first_sample_is_sync
            else:
                assert track.codec == "mp4a"
        planned = chunk.locator.end - chunk.locator.start
        assert chunk.locator.unit == "seconds" and planned <= target + 1e-6
        assert chunk.est_tokens == math.ceil(263 * planned)
        # The piece matches its planned window (the locator is not a guess).
        assert abs(max(t.seconds for t in tracks) - planned) < 0.3
    ordered = sorted(chunks, key=lambda c: c.locator.start)
    assert ordered[0].locator.start == 0.0
    for previous, chunk in zip(ordered, ordered[1:]):
        assert chunk.locator.start == previous.locator.end
    declared = mf.probe_header(source_path).duration
    assert abs(ordered[-1].locator.end - declared) < 0.1
    assert len({c.chunk_id for c in chunks}) == len(chunks)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, codec",
    [
        ("h264", "avc1"),  # copy, keyframe-planned cuts
        ("mov", "avc1"),  # QuickTime remuxed to MP4
        ("hevc", "hvc1"),  # copy
        ("vp9", "vp09"),  # copy VP9, Opus -> AAC
        ("mpeg4_avi", "avc1"),  # MPEG-4 Part 2: transcoded
        ("long_gop", "avc1"),  # one keyframe: transcoded with forced keyframes
    ],
)
def test_every_chunk_within_limits(media, name, codec):
    chunks = chunks_of(media[name])
    limit = LIMITS.video_with_audio_seconds
    assert_within_limits(chunks, media[name], limit, TARGET_WITH_AUDIO)
    assert {t.codec for c in chunks for t in mp4_tracks(part_bytes(c)) if t.handler == "vide"} == {codec}
    # Balanced: no more windows than needed when every cut may move back by one GOP.
    duration = mf.probe_header(media[name]).duration
    assert len(chunks) <= math.ceil(duration / (TARGET_WITH_AUDIO - mf.GOP_SECONDS))


@pytest.mark.slow
def test_without_audio_the_longer_video_limit_applies(media):
    target = LIMITS.video_seconds - LIMITS.duration_margin_seconds
    silent = chunks_of(media["h264_noaudio"])
    assert_within_limits(silent, media["h264_noaudio"], LIMITS.video_seconds, target, expect_audio=False)
    assert max(c.locator.end - c.locator.start for c in silent) > TARGET_WITH_AUDIO
    dropped = chunks_of(media["h264"], video_keep_audio=False)
    assert_within_limits(dropped, media["h264"], LIMITS.video_seconds, target, expect_audio=False)


@pytest.mark.slow
def test_chunk_ids_are_stable_and_depend_on_generation(media):
    first = [(c.chunk_id, c.locator) for c in chunks_of(media["h264"])]
    second = [(c.chunk_id, c.locator) for c in chunks_of(media["h264"])]
    assert first == second
    path = media["h264"]
    other = list(chunk_video(source_for(path, generation="2"), path, mf.small_settings()))
    assert not {c.chunk_id for c in other} & {cid for cid, _ in first}


@pytest.mark.slow
def test_overlap_windows(media):
    chunks = chunks_of(media["h264"], video_overlap_seconds=3.0)
    ordered = sorted(chunks, key=lambda c: c.locator.start)
    for previous, chunk in zip(ordered, ordered[1:]):
        assert chunk.locator.start <= previous.locator.end - 3.0  # overlap rounds up to a GOP
    for chunk in chunks:
        assert max(t.seconds for t in mp4_tracks(part_bytes(chunk))) <= LIMITS.video_with_audio_seconds
    assert ordered[0].locator.start == 0.0 and ordered[-1].locator.end == pytest.approx(30.0, abs=0.1)


@pytest.mark.slow
def test_audio_extracted_as_separate_chunks(media):
    from independent_probes import mp3_seconds

    chunks = chunks_of(media["h264"], extract_audio_from_video=True)
    audio = [c for c in chunks if c.modality == "audio"]
    assert audio and all(c.mime_type == "audio/mp3" for c in audio)
    assert all(mp3_seconds(part_bytes(c)) <= LIMITS.audio_seconds for c in audio)
    assert {c.modality for c in chunks} == {"video", "audio"}


@pytest.mark.slow
def test_chunks_over_the_byte_cap_are_re_encoded_smaller(media):
    cap = 200_000
    copied = chunks_of(media["h264"])
    assert max(len(part_bytes(c)) for c in copied) > cap
    chunks = chunks_of(media["h264"], inline_max_bytes=cap)
    assert [c.locator for c in chunks] == [c.locator for c in copied]
    assert all(len(part_bytes(c)) <= cap for c in chunks)
    with pytest.raises(ChunkingError) as caught:
        chunks_of(media["h264"], inline_max_bytes=5_000)
    assert caught.value.error_class == "too_large" and "does not fit" in caught.value.message


@pytest.mark.slow
def test_truncated_file_is_dead_lettered_or_warned(media, caplog):
    with pytest.raises(ChunkingError) as caught:
        chunks_of(media["truncated"])
    assert caught.value.error_class == "truncated_media"
    assert "of the declared 30.00 s" in caught.value.message
    with caplog.at_level(logging.WARNING):
        chunks = chunks_of(media["truncated"], truncated_media="warn")
    assert "looks truncated" in caplog.text
    covered = max(c.locator.end for c in chunks)
    assert 10 < covered < 20
    for chunk in chunks:
        assert max(t.seconds for t in mp4_tracks(part_bytes(chunk))) <= LIMITS.video_with_audio_seconds


@pytest.mark.parametrize(
    "name, fragment",
    [("zero", "empty file"), ("text", "ffmpeg cannot read the file: "),
     ("moov_lost", "ffmpeg cannot read the file: ")],
)
def test_bad_inputs_raise_corrupt_media(media, name, fragment):
    with pytest.raises(ChunkingError) as caught:
        chunks_of(media[name])
    assert caught.value.error_class == "corrupt_media"
    assert fragment in caught.value.message
    # ffmpeg's own diagnosis follows (its wording varies by build, so only its presence)
    assert caught.value.message.split(fragment, 1)[1].strip()


def test_short_video_is_one_chunk(media):
    (chunk,) = chunks_of(media["short"])
    assert (chunk.locator.start, chunk.locator.end) == (0.0, pytest.approx(4.0, abs=0.05))
    assert max(t.seconds for t in mp4_tracks(part_bytes(chunk))) <= LIMITS.video_with_audio_seconds


def test_audio_only_file_is_chunked_as_audio(media):
    chunks = chunks_of(media["m4a"])
    assert {c.modality for c in chunks} == {"audio"}


@pytest.mark.slow
def test_temporary_files_are_removed_even_when_abandoned(media, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    chunks_of(media["long_gop"])  # the transcoding path leaves the most behind
    assert os.listdir(tmp_path) == []
    generator = chunk_video(source_for(media["h264"]), media["h264"], mf.small_settings())
    next(generator)
    assert os.listdir(tmp_path) != []
    generator.close()
    assert os.listdir(tmp_path) == []
