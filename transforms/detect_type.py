"""Route an object to a chunker by its first bytes; the file name is only a hint.

Extensions lie (a text file named ``.mp4``, a PNG saved as ``.jpg``), so the type comes from
magic numbers. Only three decisions use the name: JSON Lines (a ``.jsonl``/``.ndjson`` file
whose first line is a JSON object is a ``records`` source), the MIME type of text, and
that a file named as text goes to the text chunker even when it does not decode (its dead
letter then says why: ``undecodable_text`` or ``binary_content``).
"""

from __future__ import annotations

import codecs
import json
import mimetypes
import struct

HEAD_BYTES = 64  # enough for every signature below; pass more to confirm a JSONL first line

TEXT = "text"
PDF = "pdf"
IMAGE = "image"
AUDIO = "audio"
VIDEO = "video"
RECORDS = "records"
EMPTY = "empty"
UNKNOWN = "unknown"

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.txt")
AVIF_BRANDS = {b"avif", b"avis"}
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
AUDIO_MP4_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
BMP_DIB_SIZES = {12, 40, 52, 56, 64, 108, 124}
ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
MP3_BAD_BITRATE = 0xF


def _iso_bmff(head: bytes) -> tuple[str, str] | None:
    """ISO base media (``ftyp`` box): MP4/MOV/M4A video or audio, AVIF/HEIC images."""
    if head[4:8] != b"ftyp":
        return None
    box_size = struct.unpack(">I", head[:4])[0]
    major = head[8:12]
    brands = {major} | {head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
    if major in AVIF_BRANDS or (major in HEIF_BRANDS and brands & AVIF_BRANDS):
        return IMAGE, "image/avif"
    if major in HEIF_BRANDS:
        return IMAGE, "image/heic"
    if major == b"qt  ":
        return VIDEO, "video/quicktime"
    if major in AUDIO_MP4_BRANDS:
        return AUDIO, "audio/mp4"
    if major.startswith(b"3g"):
        return VIDEO, "video/3gpp"
    return VIDEO, "video/mp4"


def _mp3_frame(head: bytes) -> bool:
    """MPEG audio Layer III/II frame sync with a valid version, bitrate and sample rate.

    Layer I is left out: its sync bytes ``FF FE``/``FF FF`` are also UTF-16 byte-order marks.
    """
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer in (1, 2) and bitrate not in (0, MP3_BAD_BITRATE) and rate != 3


def _binary(head: bytes) -> tuple[str, str] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return IMAGE, "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return IMAGE, "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return IMAGE, "image/gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return IMAGE, "image/tiff"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and struct.unpack("<I", head[14:18])[0] in BMP_DIB_SIZES
    ):
        return IMAGE, "image/bmp"
    if head[:4] in (b"RIFF", b"RF64", b"BW64"):
        return {
            b"WEBP": (IMAGE, "image/webp"),
            b"WAVE": (AUDIO, "audio/wav"),
            b"AVI ": (VIDEO, "video/x-msvideo"),
        }.get(head[8:12])
    if b"%PDF-" in head[:HEAD_BYTES]:
        return PDF, "application/pdf"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return VIDEO, "video/webm" if b"webm" in head else "video/x-matroska"
    if head[:4] == b"OggS":
        if b"OpusHead" in head:
            return AUDIO, "audio/opus"
        if b"theora" in head:
            return VIDEO, "video/ogg"
        return AUDIO, "audio/ogg"
    if head[:4] == b"fLaC":
        return AUDIO, "audio/flac"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return AUDIO, "audio/aiff"
    if head[:3] == b"ID3" or _mp3_frame(head):
        return AUDIO, "audio/mpeg"
    if head[:2] in (b"\xff\xf1", b"\xff\xf9"):
        return AUDIO, "audio/aac"
    if head[:16] == ASF_GUID:
        return VIDEO, "video/x-ms-asf"
    if head[:4] == b"FLV\x01":
        return VIDEO, "video/x-flv"
    if head[:4] == b"\x00\x00\x01\xba":
        return VIDEO, "video/mpeg"
    if head[:4] == b"PAR1":
        return RECORDS, "application/vnd.apache.parquet"
    return _iso_bmff(head)


def _decode_text(head: bytes, complete: bool) -> str | None:
    """The head as text if it is UTF-8 (or UTF-16 with a BOM) without NULs, else ``None``."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        # final=False tolerates a multi-byte character cut off at the end of the head.
        text = decoder.decode(head, final=complete)
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _is_jsonl(text: str, complete: bool) -> bool:
    first, newline, _ = text.lstrip().partition("\n")
    if newline or complete:
        try:
            return isinstance(json.loads(first), dict)
        except RecursionError:  # nested too deep to parse: the records chunker says so per row
            return first.startswith("{")
        except ValueError:
            return False
    return first.startswith("{")  # the first line goes past the head: trust its start


def utf16_without_bom(head: bytes) -> str | None:
    """``"utf-16-le"``/``"utf-16-be"`` when the head is UTF-16 text missing its byte-order
    mark (mostly ASCII: every other byte NUL, the rest printable), else ``None``."""
    even = head[: len(head) & ~1]
    if len(even) < 8:
        return None
    for encoding, zeros, chars in (("utf-16-le", even[1::2], even[0::2]),
                                   ("utf-16-be", even[0::2], even[1::2])):
        if zeros.count(0) >= 0.9 * len(zeros) and chars.count(0) == 0:
            try:
                text = even.decode(encoding)
            except UnicodeDecodeError:
                continue
            if all(c.isprintable() or c in "\t\n\r\f" for c in text):
                return encoding
    return None


def detect_type(head: bytes, name: str, size: int) -> tuple[str, str | None]:
    """``(detected_type, mime_type)`` of an object from its first bytes, name and size.

    Text that is not UTF-8 still routes to the text chunker, whose dead letter then says
    exactly what is wrong (not UTF-8 at offset N, UTF-16 without a BOM, binary content)
    when it is named as text, looks like UTF-16 missing its BOM, or is 8-bit text
    (Latin-1, CP-1252...) named as text.
    """
    if size == 0:
        return EMPTY, None
    found = _binary(head)
    if found:
        return found
    complete = len(head) >= size
    text = _decode_text(head, complete)
    lower = name.lower()
    guessed, _ = mimetypes.guess_type(lower)
    named_text = bool(guessed) and guessed.startswith("text/")
    if text is None:
        if named_text or utf16_without_bom(head):
            return TEXT, guessed if named_text else "text/plain"
        return UNKNOWN, None
    if lower.endswith(JSONL_SUFFIXES) and _is_jsonl(text, complete):
        return RECORDS, "application/jsonl"
    return TEXT, guessed if named_text else "text/plain"
