"""The emulator's own measurement of audio/video: container indexes parsed in Python.

What the service accepts and bills must not be judged by the pipeline's own tools, or a
bug shared by both would pass unseen. So the emulator never runs the pipeline's ffmpeg
packet scan (``transforms/media``): it reads the sample tables the containers carry,
for the formats the service takes (MP4/MOV video, MP3/WAV audio; research note
gemini-batch-api.md §5):

- MP4/MOV (ISO BMFF): per track, the presentation span of its samples, from ``stts``
  (durations), ``ctts`` (composition offsets) and the first ``elst`` edit; samples an
  edit list hides (encoder priming) count, as they do in a packet span. Keyframes from
  ``stss`` (none = every sample is one).
- MP3: MPEG audio frame headers walked from the first frame; the Xing/Info/VBRI
  header frame carries no audio and is not counted.
- WAV: ``fmt `` and ``data`` chunks; frames = data bytes / block align.

Anything else raises ``ContainerError`` (a one-line reason the API turns into a 400).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import accumulate

_BMFF_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"}


class ContainerError(ValueError):
    """The bytes are not a complete MP4/MOV, MP3 or WAV file."""


@dataclass(frozen=True)
class Track:
    kind: str  # video | audio | other
    codec: str  # sample entry four-cc (avc1, mp4a, ...), "mp3" or "pcm"
    start: float  # seconds; negative when an edit list hides pre-roll
    end: float
    keyframes: tuple[float, ...] = ()

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Container:
    format: str  # mp4 | mp3 | wav
    tracks: tuple[Track, ...]

    def first(self, kind: str) -> Track | None:
        return next((t for t in self.tracks if t.kind == kind and t.end > t.start), None)


def parse(data: bytes) -> Container:
    """Measure ``data`` by its container; raises ``ContainerError``."""
    if not data:
        raise ContainerError("the file is empty")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return Container("wav", (_wav_track(data),))
    if data[4:8] in _BMFF_TOP:
        return Container("mp4", _bmff_tracks(data))
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return Container("mp3", (_mp3_track(data),))
    raise ContainerError("unsupported container (the service takes MP4/MOV video and MP3/WAV audio)")


# -- ISO BMFF ------------------------------------------------------------------------------
def _boxes(data: bytes, start: int, end: int):
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise ContainerError("truncated box header")
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ContainerError(f"box {kind.decode('latin-1')!r} runs past the end of the file: truncated")
        yield kind, pos + header, pos + size
        pos += size


def _child(data: bytes, span: tuple[int, int], kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _boxes(data, *span) if k == kind), None)


def _need(box: tuple[int, int] | None, what: str) -> tuple[int, int]:
    if box is None:
        raise ContainerError(f"no {what} box: not a complete MP4")
    return box


def _full_box(data: bytes, box: tuple[int, int]) -> tuple[int, int]:
    """(version, offset of the payload after version + flags)."""
    return data[box[0]], box[0] + 4


def _bmff_tracks(data: bytes) -> tuple[Track, ...]:
    whole = (0, len(data))
    top = {k for k, _s, _e in _boxes(data, *whole)}
    if b"moof" in top:
        raise ContainerError("fragmented MP4 is not supported")
    moov = _need(_child(data, whole, b"moov"), "moov")
    version, pos = _full_box(data, _need(_child(data, moov, b"mvhd"), "mvhd"))
    movie_scale = struct.unpack_from(">I", data, pos + (16 if version == 1 else 8))[0] or 1
    tracks = [_bmff_track(data, (s, e), movie_scale) for k, s, e in _boxes(data, *moov) if k == b"trak"]
    if not tracks:
        raise ContainerError("the MP4 has no tracks")
    return tuple(tracks)


def _table(data: bytes, box: tuple[int, int] | None, fields: str) -> list[tuple]:
    if box is None:
        return []
    _version, pos = _full_box(data, box)
    (count,) = struct.unpack_from(">I", data, pos)
    size = struct.calcsize(fields)
    if pos + 4 + count * size > box[1]:
        raise ContainerError("sample table runs past its box: truncated")
    return list(struct.iter_unpack(fields, data[pos + 4 : pos + 4 + count * size]))


def _bmff_track(data: bytes, trak: tuple[int, int], movie_scale: int) -> Track:
    mdia = _need(_child(data, trak, b"mdia"), "mdia")
    version, pos = _full_box(data, _need(_child(data, mdia, b"mdhd"), "mdhd"))
    scale = struct.unpack_from(">I", data, pos + (16 if version == 1 else 8))[0]
    if not scale:
        raise ContainerError("track timescale is 0")
    hdlr = _need(_child(data, mdia, b"hdlr"), "hdlr")
    handler = data[hdlr[0] + 8 : hdlr[0] + 12]
    kind = {b"vide": "video", b"soun": "audio"}.get(handler, "other")
    stbl = _need(_child(data, _need(_child(data, mdia, b"minf"), "minf"), b"stbl"), "stbl")
    stsd = _need(_child(data, stbl, b"stsd"), "stsd")
    codec = data[stsd[0] + 12 : stsd[0] + 16].decode("latin-1")
    durations = [delta for count, delta in _table(data, _child(data, stbl, b"stts"), ">II")
                 for _ in range(count)]
    if not durations:
        return Track(kind, codec, 0.0, 0.0)
    # Composition offsets are read as signed whatever the box version (writers differ).
    offsets = [off for count, off in _table(data, _child(data, stbl, b"ctts"), ">Ii")
               for _ in range(count)]
    offsets += [0] * (len(durations) - len(offsets))
    delay, media_time = _first_edit(data, trak, movie_scale, scale)
    decode_times = [0, *accumulate(durations)]
    pts = [decode_times[i] + offsets[i] - media_time for i in range(len(durations))]
    start = min(pts)
    end = max(p + d for p, d in zip(pts, durations))
    stss = _child(data, stbl, b"stss")
    key_samples = [n for (n,) in _table(data, stss, ">I")] if stss else range(1, len(pts) + 1)
    keyframes = tuple(sorted(pts[n - 1] / scale + delay for n in key_samples if 0 < n <= len(pts)))
    return Track(kind, codec, start / scale + delay, end / scale + delay, keyframes)


def _first_edit(data: bytes, trak: tuple[int, int], movie_scale: int, scale: int) -> tuple[float, int]:
    """(empty-edit delay in seconds, media time in track units) of the edit list."""
    edts = _child(data, trak, b"edts")
    elst = _child(data, edts, b"elst") if edts else None
    if elst is None:
        return 0.0, 0
    version = data[elst[0]]
    entries = _table(data, elst, ">QqI" if version == 1 else ">IiI")
    delay = 0.0
    for duration, media_time, _rate in entries:
        if media_time == -1:  # an empty edit: the track starts later
            delay += duration / movie_scale
            continue
        return delay, media_time
    return delay, 0


# -- MP3 -----------------------------------------------------------------------------------
_MP3_KBPS = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(frame bytes, samples, sample rate) of a Layer III header at ``pos``, else None."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2 = data[pos + 1], data[pos + 2]
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved version, not Layer III, free-format or bad bit rate / rate
    mpeg1 = version == 3
    kbps = _MP3_KBPS[1 if mpeg1 else 2][bitrate_index]
    rate = _MP3_RATES[version][rate_index]
    samples = 1152 if mpeg1 else 576
    return (samples // 8) * kbps * 1000 // rate + ((b2 >> 1) & 1), samples, rate


def _mp3_track(data: bytes) -> Track:
    pos = 0
    if data[:3] == b"ID3":
        if len(data) < 10:
            raise ContainerError("truncated ID3 tag")
        size = data[6:10]
        pos = 10 + ((size[0] << 21) | (size[1] << 14) | (size[2] << 7) | size[3])
    first = _mp3_frame(data, pos)
    if first is None:
        raise ContainerError("no MPEG audio layer III frame where the stream should start")
    samples = 0
    rate = first[2]
    index = 0
    while (frame := _mp3_frame(data, pos)) is not None and pos + frame[0] <= len(data):
        head = data[pos : pos + min(frame[0], 64)]
        if not (index == 0 and (b"Xing" in head or b"Info" in head or b"VBRI" in head)):
            samples += frame[1]
        pos += frame[0]
        index += 1
    if samples == 0:
        raise ContainerError("no MPEG audio frames")
    return Track("audio", "mp3", 0.0, samples / rate)


# -- WAV -----------------------------------------------------------------------------------
def _wav_track(data: bytes) -> Track:
    pos, fmt, frames = 12, None, None
    while pos + 8 <= len(data):
        kind, size = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        if kind == b"fmt " and size >= 16:
            _tag, channels, rate, _byte_rate, block_align = struct.unpack_from("<HHIIH", data, body)
            fmt = (channels, rate, block_align)
        elif kind == b"data":
            available = len(data) - body  # streaming writers leave 0 or 0xFFFFFFFF
            length = available if size in (0, 0xFFFFFFFF) else min(size, available)
            if fmt is None or not fmt[1] or not fmt[2]:
                raise ContainerError("WAV data before a valid fmt chunk")
            frames = length // fmt[2]
            break
        pos = body + size + (size & 1)
    if frames is None:
        raise ContainerError("no WAV data chunk")
    return Track("audio", "pcm", 0.0, frames / fmt[1])
