"""Measure chunks WITHOUT the chunkers' own method, so a shared bug cannot hide.

The chunkers measure media with ffmpeg packet scans, count PDF pages with pypdf and read
images with Pillow. These probes parse the bytes directly: MP4 boxes (per-track media
duration from ``mdhd``, which counts every sample including edit-list pre-roll), WAV
headers (stdlib ``wave``), MP3 frame headers, PDF page objects and PNG/JPEG headers.
"""
from __future__ import annotations

import base64
import io
import re
import struct
import wave
from dataclasses import dataclass


@dataclass(frozen=True)
class Track:
    handler: str  # vide | soun
    codec: str  # sample entry: avc1, hvc1, vp09, av01, mp4a, ...
    seconds: float
    first_sample_is_sync: bool


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        yield kind.decode("latin-1"), pos + header, pos + size
        pos += size


def _child(data: bytes, start: int, end: int, kind: str):
    return next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)


def mp4_tracks(data: bytes) -> list[Track]:
    """Per-track duration, codec and whether sample 1 is a sync sample (decodable start)."""
    moov = _child(data, 0, len(data), "moov")
    assert moov, "no moov box: not a complete MP4"
    tracks = []
    for kind, start, end in _boxes(data, *moov):
        if kind != "trak":
            continue
        mdia = _child(data, start, end, "mdia")
        mdhd_s, _ = _child(data, *mdia, "mdhd")
        version = data[mdhd_s]
        if version == 1:
            timescale, duration = struct.unpack(">IQ", data[mdhd_s + 20 : mdhd_s + 32])
        else:
            timescale, duration = struct.unpack(">II", data[mdhd_s + 12 : mdhd_s + 20])
        hdlr_s, _ = _child(data, *mdia, "hdlr")
        handler = data[hdlr_s + 8 : hdlr_s + 12].decode("latin-1")
        stbl = _child(data, *_child(data, *mdia, "minf"), "stbl")
        stsd_s, _ = _child(data, *stbl, "stsd")
        codec = data[stsd_s + 12 : stsd_s + 16].decode("latin-1")
        stss = _child(data, *stbl, "stss")
        # No stss box means every sample is a sync sample.
        first_sync = stss is None or struct.unpack(">II", data[stss[0] + 4 : stss[0] + 12]) [1] == 1
        tracks.append(Track(handler, codec, duration / timescale, first_sync))
    return tracks


def mp4_seconds(data: bytes) -> float:
    return max(t.seconds for t in mp4_tracks(data))


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


_MP3_KBPS = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mp3_seconds(data: bytes) -> float:
    """Walk MPEG audio Layer III frame headers; every frame (LAME info frame too) counts."""
    pos = 0
    if data[:3] == b"ID3":
        size = data[6:10]
        pos = 10 + ((size[0] << 21) | (size[1] << 14) | (size[2] << 7) | size[3])
    seconds = 0.0
    while pos + 4 <= len(data):
        b1, b2 = data[pos + 1], data[pos + 2]
        if data[pos] != 0xFF or (b1 & 0xE0) != 0xE0:
            break
        version = (b1 >> 3) & 3
        assert (b1 >> 1) & 3 == 1, "not Layer III"
        mpeg1 = version == 3
        kbps = _MP3_KBPS[1 if mpeg1 else 2][b2 >> 4]
        rate = _MP3_RATES[version][(b2 >> 2) & 3]
        samples = 1152 if mpeg1 else 576
        length = (samples // 8) * kbps * 1000 // rate + ((b2 >> 1) & 1)
        seconds += samples / rate
        pos += length
    assert seconds > 0, "no MP3 frames"
    return seconds


def pdf_page_count(data: bytes) -> int:
    """Count page objects (``/Type /Page``, not ``/Pages``) in an uncompressed object table."""
    assert b"/ObjStm" not in data, "object streams would hide pages from this probe"
    return len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", data))


def image_format_size(data: bytes) -> tuple[str, int, int]:
    """(``PNG``|``JPEG``, width, height) from the file header alone."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        width, height = struct.unpack(">II", data[16:24])
        return "PNG", width, height
    assert data[:3] == b"\xff\xd8\xff", "neither PNG nor JPEG"
    pos = 2
    while pos < len(data):
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return "JPEG", width, height
        pos += 2 + length
    raise AssertionError("no SOF marker")


def part_bytes(chunk) -> bytes:
    """The media bytes of a chunk's single inline part."""
    (part,) = chunk.parts
    return base64.b64decode(part["inline_data"]["data"], validate=True)
