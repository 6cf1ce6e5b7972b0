"""Audio chunking on generated tones, measured by WAV headers and MP3 frame walks."""
from __future__ import annotations

import math
import os

import pytest

import media_factory as mf
from independent_probes import mp3_seconds, part_bytes, wav_seconds
from transforms.chunk_errors import ChunkingError
from transforms.media.audio import chunk_audio
from transforms.types import SourceObject

LIMITS = mf.SMALL_LIMITS
TARGET = LIMITS.audio_seconds - LIMITS.duration_margin_seconds
SECONDS = 20


def source_for(path: str, generation: str = "1") -> SourceObject:
    return SourceObject(
        uri=f"gs://bucket/{os.path.basename(path)}",
        size_bytes=os.path.getsize(path),
        generation=generation,
        detected_type="audio",
    )


def chunks_of(path: str, **settings):
    return list(chunk_audio(source_for(path), path, mf.small_settings(**settings)))


def measured_seconds(chunk) -> float:
    data = part_bytes(chunk)
    return wav_seconds(data) if chunk.mime_type == "audio/wav" else mp3_seconds(data)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    files = {suffix: mf.audio_file(d / f"tone{suffix}", SECONDS) for suffix in mf.AUDIO_CODECS}
    files.update(
        surround_96k=mf.audio_file(d / "surround.flac", 10, channels=6, sample_rate=96000),
        short=mf.audio_file(d / "short.mp3", 5),
        silent_video=mf.h264_mp4(d / "silent.mp4", 5, audio=False),
        text=mf.text_file(d / "text.mp3"),
        zero=mf.write_bytes(d / "zero.wav", b""),
    )
    return files


@pytest.mark.parametrize(
    "suffix, mime",
    [
        (".wav", "audio/wav"),  # stream copy
        (".mp3", "audio/mp3"),  # stream copy
        (".flac", "audio/mp3"),  # transcoded
        (".ogg", "audio/mp3"),
        (".opus", "audio/mp3"),
        (".m4a", "audio/mp3"),
    ],
)
def test_every_chunk_within_limits_and_balanced(media, suffix, mime):
    chunks = chunks_of(media[suffix])
    assert len(chunks) == math.ceil(SECONDS / TARGET)
    durations = []
    for chunk in chunks:
        assert (chunk.modality, chunk.mime_type) == ("audio", mime)
        assert len(part_bytes(chunk)) <= mf.small_settings().inline_max_bytes
        assert measured_seconds(chunk) <= LIMITS.audio_seconds
        planned = chunk.locator.end - chunk.locator.start
        assert chunk.locator.unit == "seconds" and planned <= TARGET
        assert abs(measured_seconds(chunk) - planned) < 0.15  # the locator is what is inside
        assert chunk.est_tokens == math.ceil(32 * planned)
        durations.append(planned)
    assert max(durations) - min(durations) < 0.05  # balanced: no tiny tail
    assert chunks[0].locator.start == 0.0
    for previous, chunk in zip(chunks, chunks[1:]):
        assert chunk.locator.start == previous.locator.end
    assert chunks[-1].locator.end == pytest.approx(SECONDS, abs=0.05)


def test_wav_over_the_byte_cap_is_transcoded_to_mp3(media):
    # 7 s of 44.1 kHz stereo 16-bit WAV is 1.2 MB: over a 1 MB cap, so no copy.
    chunks = chunks_of(media[".wav"], inline_max_bytes=1_000_000)
    assert {c.mime_type for c in chunks} == {"audio/mp3"}
    assert all(len(part_bytes(c)) <= 1_000_000 for c in chunks)


def test_surround_high_rate_audio_is_downmixed_for_mp3(media):
    chunks = chunks_of(media["surround_96k"])
    assert chunks and all(measured_seconds(c) <= LIMITS.audio_seconds for c in chunks)


def test_short_audio_is_one_chunk(media):
    (chunk,) = chunks_of(media["short"])
    assert chunk.locator.start == 0.0 and chunk.locator.end == pytest.approx(5.0, abs=0.05)


def test_chunk_ids_are_stable(media):
    first = [c.chunk_id for c in chunks_of(media[".flac"])]
    assert first == [c.chunk_id for c in chunks_of(media[".flac"])]
    assert len(set(first)) == len(first)


@pytest.mark.parametrize(
    "name, error_class, fragment",
    [
        ("silent_video", "unsupported_type", "no audio stream"),
        ("text", "corrupt_media", "ffmpeg cannot read the file: "),
        ("zero", "corrupt_media", "empty file"),
    ],
)
def test_bad_inputs(media, name, error_class, fragment):
    with pytest.raises(ChunkingError) as caught:
        chunks_of(media[name])
    assert caught.value.error_class == error_class
    assert fragment in caught.value.message
    # ffmpeg's own diagnosis follows (its wording varies by build, so only its presence)
    assert caught.value.message.split(fragment, 1)[1].strip()
