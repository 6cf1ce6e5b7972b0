"""Type detection by magic bytes on generated files and hand-made heads."""
from __future__ import annotations

import codecs
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import media_factory as mf
from transforms.detect_type import HEAD_BYTES, detect_type

TYPES = {"text", "pdf", "image", "audio", "video", "records", "empty", "unknown"}


def detect_file(path: str, name: str | None = None):
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    return detect_type(head, name or os.path.basename(path), os.path.getsize(path))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("detect")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a", "b"]}), d / "rows.parquet")
    made = {
        "png": mf.save_image(d / "a.png", mf.gradient(), "PNG"),
        "jpeg": mf.save_image(d / "a.jpg", mf.gradient(), "JPEG"),
        "gif": mf.animated_gif(d / "a.gif"),
        "webp": mf.save_image(d / "a.webp", mf.gradient(), "WEBP"),
        "tiff": mf.save_image(d / "a.tiff", mf.gradient(), "TIFF"),
        "bmp": mf.save_image(d / "a.bmp", mf.gradient(), "BMP"),
        "avif": mf.save_image(d / "a.avif", mf.gradient(), "AVIF"),
        "pdf": mf.text_pdf(d / "a.pdf", 1),
        "mp4": mf.h264_mp4(d / "a.mp4", 1),
        "mov": mf.h264_mov(d / "a.mov", 1),
        "webm": mf.vp9_webm(d / "a.webm", 1),
        "avi": mf.mpeg4_avi(d / "a.avi", 1),
        "parquet": str(d / "rows.parquet"),
        "zero": mf.write_bytes(d / "zero.mp4", b""),
        "text_mp4": mf.text_file(d / "notes.mp4"),
    }
    made.update({suffix: mf.audio_file(d / f"a{suffix}", 1) for suffix in mf.AUDIO_CODECS})
    return made


@pytest.mark.parametrize(
    "name, expected",
    [
        ("png", ("image", "image/png")),
        ("jpeg", ("image", "image/jpeg")),
        ("gif", ("image", "image/gif")),
        ("webp", ("image", "image/webp")),
        ("tiff", ("image", "image/tiff")),
        ("bmp", ("image", "image/bmp")),
        ("avif", ("image", "image/avif")),
        ("pdf", ("pdf", "application/pdf")),
        ("mp4", ("video", "video/mp4")),
        ("mov", ("video", "video/quicktime")),
        ("webm", ("video", "video/webm")),
        ("avi", ("video", "video/x-msvideo")),
        (".wav", ("audio", "audio/wav")),
        (".mp3", ("audio", "audio/mpeg")),
        (".flac", ("audio", "audio/flac")),
        (".ogg", ("audio", "audio/ogg")),
        (".opus", ("audio", "audio/opus")),
        (".m4a", ("audio", "audio/mp4")),
        ("parquet", ("records", "application/vnd.apache.parquet")),
        ("zero", ("empty", None)),
        ("text_mp4", ("text", "text/plain")),  # the name lies; the bytes decide
    ],
)
def test_generated_files(files, name, expected):
    assert detect_file(files[name]) == expected


def test_misleading_extension_does_not_matter(files):
    assert detect_file(files["png"], name="photo.mp4") == ("image", "image/png")
    assert detect_file(files["pdf"], name="report.txt") == ("pdf", "application/pdf")


@pytest.mark.parametrize(
    "head, name, size, expected",
    [
        (b"hello world\n", "a.txt", 12, ("text", "text/plain")),
        (b"# Title\n", "README.md", 8, ("text", "text/markdown")),
        ("naïve café ".encode() * 6, "a.txt", 10_000, ("text", "text/plain")),
        ("東京".encode()[:4], "cut.txt", 1000, ("text", "text/plain")),  # character cut at the head's end
        (codecs.BOM_UTF16_LE + "hi there".encode("utf-16-le"), "u16.txt", 18, ("text", "text/plain")),
        (b'{"text": "a", "image": "gs://b/x.png"}\n{"text": "b"}\n', "rows.jsonl", 60, ("records", "application/jsonl")),
        (b'{"text": "' + b"x" * 80, "long.jsonl", 10_000, ("records", "application/jsonl")),
        (b"[1, 2, 3]\n", "rows.jsonl", 10, ("text", "text/plain")),
        # a first row nested too deep to parse is still a records file (that row is a bad record)
        (b'{"a": ' + b"[" * 1500 + b"]" * 1500 + b"}\n", "deep.jsonl", 3008, ("records", "application/jsonl")),
        (b'{"text": "a"}\n', "rows.json", 14, ("text", "text/plain")),  # .json is not JSON Lines
        (b"BMW cars are fast\n", "cars.txt", 18, ("text", "text/plain")),  # 'BM' but no bitmap header
        (b"text\x00with NUL", "a.bin", 13, ("unknown", None)),
        ("Crème brûlée".encode("latin-1"), "menu.txt", 12, ("text", "text/plain")),  # for a clear dead letter
        ("Crème brûlée".encode("latin-1"), "menu.dat", 12, ("unknown", None)),
        # named as text: the text chunker's dead letter says what is wrong with it
        (b"\x01\x02 caf\xe9 bytes", "a.txt", 14, ("text", "text/plain")),
        (b"PK\x03\x04\x14\x00\x00\x00", "notes.txt", 4000, ("text", "text/plain")),
        # UTF-16 that lost its byte-order mark, whatever the name
        ("hello UTF-16 world".encode("utf-16-le"), "u16.dat", 36, ("text", "text/plain")),
        ("hello UTF-16 world".encode("utf-16-be"), "u16", 36, ("text", "text/plain")),
        (bytes(range(128, 192)), "blob.bin", 64, ("unknown", None)),
        (b"\xff\xfb\x90\x64" + bytes(60), "nameless", 4000, ("audio", "audio/mpeg")),  # MP3 without ID3
        (b"", "empty.txt", 0, ("empty", None)),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "IMG_1.HEIC", 5000, ("image", "image/heic")),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf", "x.avif", 5000, ("image", "image/avif")),
    ],
)
def test_heads(head, name, size, expected):
    assert detect_type(head, name, size) == expected


@given(head=st.binary(max_size=HEAD_BYTES), name=st.text(max_size=40), extra=st.integers(0, 10**9))
def test_never_raises_and_answers_a_known_type(head, name, extra):
    detected, mime = detect_type(head, name, len(head) + extra)
    assert detected in TYPES
    assert (mime is None) == (detected in ("empty", "unknown"))
