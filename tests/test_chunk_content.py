"""Which part of the source each chunk holds, checked against the source itself.

Counts and durations cannot tell a chunk of pages 7-12 from a second copy of pages 1-6.
Here every source says where you are in it: each PDF page has its own text (compared
page by page with pypdf reading the source), each second of audio is its own tone and
each second of video its own grey level (decoded from the chunk by the test, with the
stdlib ``wave`` module or the pinned ffmpeg, never by the chunker's code), so a chunk's
content must match the source at its locator, all along the chunk.
"""
from __future__ import annotations

import io
import math
import os
import subprocess
import wave

import numpy as np
import pytest
from pypdf import PdfReader

import media_factory as mf
from conftest import PINNED_FFMPEG
from independent_probes import part_bytes
from transforms.media.audio import chunk_audio
from transforms.media.pdf import chunk_pdf
from transforms.media.video import chunk_video
from transforms.types import SourceObject

pytestmark = pytest.mark.slow

RATE = 16_000
TONE_HZ, TONE_STEP = 400, 50  # second s of the audio source is a (400 + 50 s) Hz tone
FPS, GREY, GREY_STEP = 10, 16, 9  # second s of the video source is grey level 16 + 9 s


def _source(path, kind: str) -> SourceObject:
    return SourceObject(uri=str(path), size_bytes=os.path.getsize(path), generation="1",
                        detected_type=kind)


def _decode(data: bytes, suffix: str, tmp_path, *output: str) -> bytes:
    """Decode a chunk with the pinned ffmpeg (the test's own reader)."""
    path = tmp_path / f"chunk{suffix}"
    path.write_bytes(data)
    return subprocess.run([PINNED_FFMPEG, "-v", "error", "-nostdin", "-i", str(path), *output, "-"],
                          check=True, capture_output=True).stdout


def _covers(chunks, total: float, tolerance: float) -> None:
    spans = sorted((c.locator.start, c.locator.end) for c in chunks)
    assert spans[0][0] == pytest.approx(0, abs=tolerance)
    assert spans[-1][1] == pytest.approx(total, abs=tolerance)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start == pytest.approx(end, abs=tolerance), spans


# -- PDF -----------------------------------------------------------------------------------
def test_each_pdf_chunk_holds_exactly_the_pages_of_its_locator(tmp_path):
    path = mf.text_pdf(tmp_path / "manual.pdf", pages=20)
    source_pages = [p.extract_text() for p in PdfReader(path).pages]
    assert len(set(source_pages)) == 20  # each page says which page it is
    chunks = list(chunk_pdf(_source(path, "pdf"), path, mf.small_settings()))
    assert len(chunks) >= 4 and chunks[0].locator.unit == "pages"
    for chunk in chunks:
        start, end = int(chunk.locator.start), int(chunk.locator.end)  # 1-based, inclusive
        pages = [p.extract_text() for p in PdfReader(io.BytesIO(part_bytes(chunk))).pages]
        assert pages == source_pages[start - 1 : end], f"chunk for pages {start}-{end}"
        assert pages[0].startswith(f"Page {start}.")
    covered = sorted(p for c in chunks for p in range(int(c.locator.start), int(c.locator.end) + 1))
    assert covered == list(range(1, 21))


# -- audio ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stepped_tones(tmp_path_factory) -> tuple[str, float]:
    """A 20 s WAV, written sample by sample (no ffmpeg): second s is one tone."""
    seconds = 20
    t = np.arange(seconds * RATE) / RATE
    freq = TONE_HZ + TONE_STEP * np.floor(t)
    phase = 2 * np.pi * np.cumsum(freq) / RATE
    samples = (0.5 * 32767 * np.sin(phase)).astype("<i2")
    path = tmp_path_factory.mktemp("tones") / "tones.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return str(path), float(seconds)


def _tone_second(pcm: np.ndarray) -> int:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    hz = np.fft.rfftfreq(len(pcm), 1 / RATE)[int(np.argmax(spectrum))]
    return round((hz - TONE_HZ) / TONE_STEP)


def _assert_tones_follow_the_locator(pcm: np.ndarray, start: float) -> int:
    """Every 0.1 s window away from a tone change is the tone of source second start + t."""
    window, checked = RATE // 10, 0
    for begin in range(0, len(pcm) - window, window // 2):
        source_time = start + (begin + window / 2) / RATE
        if abs(source_time - round(source_time)) < 0.15:  # a tone change nearby
            continue
        assert _tone_second(pcm[begin : begin + window]) == math.floor(source_time), (
            f"at {source_time:.2f} s of the source")
        checked += 1
    return checked


def test_each_wav_chunk_holds_the_seconds_of_its_locator(stepped_tones):
    path, seconds = stepped_tones
    chunks = list(chunk_audio(_source(path, "audio"), path, mf.small_settings()))
    assert len(chunks) >= 3 and all(c.mime_type == "audio/wav" for c in chunks)  # stream copy
    _covers(chunks, seconds, tolerance=0.05)
    for chunk in chunks:
        with wave.open(io.BytesIO(part_bytes(chunk))) as w:
            assert w.getframerate() == RATE
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)
        assert _assert_tones_follow_the_locator(pcm, chunk.locator.start) > 20


def test_each_transcoded_mp3_chunk_holds_the_seconds_of_its_locator(stepped_tones, tmp_path):
    wav, seconds = stepped_tones
    flac = str(tmp_path / "tones.flac")
    subprocess.run([PINNED_FFMPEG, "-v", "error", "-nostdin", "-i", wav, "-c:a", "flac", flac], check=True)
    chunks = list(chunk_audio(_source(flac, "audio"), flac, mf.small_settings()))
    assert len(chunks) >= 3 and all(c.mime_type == "audio/mp3" for c in chunks)
    _covers(chunks, seconds, tolerance=0.1)
    for chunk in chunks:
        raw = _decode(part_bytes(chunk), ".mp3", tmp_path, "-f", "s16le", "-ac", "1", "-ar", str(RATE))
        pcm = np.frombuffer(raw, "<i2").astype(np.float64)
        assert _assert_tones_follow_the_locator(pcm, chunk.locator.start) > 20


# -- video ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stepped_greys(tmp_path_factory) -> tuple[str, float]:
    """A 24 s H.264 MP4 (keyframe every second): second s is one flat grey level."""
    seconds, side = 24, 64
    levels = [GREY + GREY_STEP * (i // FPS) for i in range(seconds * FPS)]
    frames = b"".join(bytes([level]) * (side * side) for level in levels)
    path = tmp_path_factory.mktemp("greys") / "greys.mp4"
    subprocess.run([PINNED_FFMPEG, "-v", "error", "-nostdin", "-f", "rawvideo", "-pix_fmt", "gray",
                    "-s", f"{side}x{side}", "-r", str(FPS), "-i", "-", "-c:v", "libx264",
                    "-preset", "veryfast", "-pix_fmt", "yuv420p", "-x264-params",
                    f"keyint={FPS}:min-keyint={FPS}:scenecut=0", str(path)],
                   input=frames, check=True)
    return str(path), float(seconds)


def test_each_video_chunk_holds_the_seconds_of_its_locator(stepped_greys, tmp_path):
    path, seconds = stepped_greys
    chunks = list(chunk_video(_source(path, "video"), path, mf.small_settings()))
    assert len(chunks) >= 3
    _covers(chunks, seconds, tolerance=0.11)
    for chunk in chunks:
        raw = _decode(part_bytes(chunk), ".mp4", tmp_path, "-f", "rawvideo", "-pix_fmt", "gray")
        frames = np.frombuffer(raw, np.uint8).reshape(-1, 64 * 64).mean(axis=1)
        assert len(frames) == pytest.approx((chunk.locator.end - chunk.locator.start) * FPS, abs=1)
        for i, level in enumerate(frames):
            second = math.floor(chunk.locator.start + i / FPS + 1e-6)
            assert abs(level - (GREY + GREY_STEP * second)) < GREY_STEP / 2, (
                f"frame {i} of the chunk at {chunk.locator.start:g} s shows second "
                f"{(level - GREY) / GREY_STEP:.1f}, not {second}")
