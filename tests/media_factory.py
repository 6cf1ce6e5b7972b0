"""Small test media generated at test time (nothing binary is committed).

Video and audio come from ffmpeg's lavfi sources (``testsrc2``, ``sine``) through the ffmpeg
bundled with imageio-ffmpeg; PDFs from fpdf2 and pypdf; images from Pillow. Clips are short
and tiny (seconds, 320x180) so the whole media suite runs in well under a minute; tests use
small limits (see ``small_settings``) so that even these clips must be cut.
"""
from __future__ import annotations

import dataclasses
import io
import os
import struct
import subprocess
import tempfile
import zlib

import imageio_ffmpeg
from PIL import Image

from transforms.limits import DEFAULT_CONFIG_DIR, load_limits_file
from transforms.settings import ChunkSettings

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def probe_header(path) -> "MediaInfo":
    """The input header alone (``ffmpeg -i``, a zero-length copy: nothing is decoded), an
    oracle independent of the product's one-run probe and scan."""
    from transforms.media.ffmpeg_tools import parse_header

    err = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-i", str(path), "-t", "0", "-c", "copy",
                          "-f", "null", "-"], capture_output=True, text=True, errors="replace").stderr
    return parse_header(err)
SIZE = "320x180"
RATE = 15
GOP_SECONDS = 2  # keyframe interval of the generated clips (except the long-GOP one)

PRODUCTION_LIMITS = load_limits_file(DEFAULT_CONFIG_DIR / "limits" / "gemini-embedding-2.yaml")
SMALL_LIMITS = dataclasses.replace(
    PRODUCTION_LIMITS,
    video_seconds=12,
    video_with_audio_seconds=10,
    audio_seconds=8,
    duration_margin_seconds=1.0,
)


def small_settings(**overrides) -> ChunkSettings:
    """Production settings with limits small enough that seconds-long clips get cut."""
    return ChunkSettings(limits=SMALL_LIMITS, **overrides)


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", "-nostdin", *args], check=True)


def _lavfi_video(seconds: float, sample_rate: int = 48000, size: str = SIZE) -> list[str]:
    return [
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={RATE}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}",
        "-t", str(seconds),
    ]


def h264_mp4(
    path, seconds: float = 30, audio: bool = True, gop: int = GOP_SECONDS * RATE, size: str = SIZE, extra=()
) -> str:
    """H.264 (+AAC) MP4 with a keyframe every ``gop`` frames."""
    audio_args = ["-c:a", "aac", "-b:a", "64k"] if audio else ["-an"]
    _ffmpeg(
        *_lavfi_video(seconds, size=size), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0", *audio_args, *extra, str(path),
    )
    return str(path)


def long_gop_mp4(path, seconds: float = 30, size: str = SIZE) -> str:
    """One keyframe at t=0 only: stream copy cannot cut it anywhere."""
    return h264_mp4(path, seconds, gop=100_000, size=size)


def h264_mov(path, seconds: float = 20) -> str:
    """QuickTime container (major brand ``qt  ``)."""
    return h264_mp4(path, seconds, extra=("-f", "mov"))


def hevc_mp4(path, seconds: float = 20) -> str:
    _ffmpeg(
        *_lavfi_video(seconds), "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-x265-params", f"keyint={GOP_SECONDS * RATE}:min-keyint={GOP_SECONDS * RATE}:log-level=error", "-tag:v", "hvc1",
        "-c:a", "aac", str(path),
    )
    return str(path)


def vp9_webm(path, seconds: float = 25) -> str:
    """VP9 + Opus: video passes by copy, Opus is re-encoded to AAC."""
    _ffmpeg(
        *_lavfi_video(seconds), "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
        "-b:v", "300k", "-g", str(GOP_SECONDS * RATE), "-c:a", "libopus", str(path),
    )
    return str(path)


def mpeg4_avi(path, seconds: float = 25) -> str:
    """MPEG-4 Part 2 + MP3 in AVI: must be transcoded."""
    _ffmpeg(*_lavfi_video(seconds, 44100), "-c:v", "mpeg4", "-q:v", "5", "-c:a", "libmp3lame", str(path))
    return str(path)


def truncated_mp4(path, source_mp4: str, faststart: bool = True) -> str:
    """First half of an MP4. With ``faststart`` the moov survives and the file still opens
    with its full declared duration; without it the moov is lost and nothing opens."""
    with tempfile.TemporaryDirectory() as work:
        full = os.path.join(work, "full.mp4")
        _ffmpeg("-i", source_mp4, "-c", "copy", *(["-movflags", "+faststart"] if faststart else []), full)
        with open(full, "rb") as fh:
            data = fh.read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    return str(path)


AUDIO_CODECS = {
    ".wav": ["-c:a", "pcm_s16le"],
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    ".flac": ["-c:a", "flac"],
    ".ogg": ["-c:a", "libvorbis"],
    ".opus": ["-c:a", "libopus"],
    ".m4a": ["-c:a", "aac"],
}


def audio_file(path, seconds: float = 20, channels: int = 2, sample_rate: int = 44100) -> str:
    """A sine tone encoded by the codec the extension names (see ``AUDIO_CODECS``)."""
    suffix = str(path)[str(path).rindex("."):]
    _ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}", "-t", str(seconds),
        "-ac", str(channels), *AUDIO_CODECS[suffix], str(path),
    )
    return str(path)


def write_bytes(path, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def text_file(path, size: int = 4096) -> str:
    """Plain text (e.g. named ``.mp4`` to check that names do not decide the type)."""
    line = b"This is not media, just a line of text.\n"
    return write_bytes(path, (line * (size // len(line) + 1))[:size])


# --- PDFs -------------------------------------------------------------------------------

def text_pdf(path, pages: int = 50) -> str:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.multi_cell(0, 8, f"Page {number}. " + "Lorem ipsum dolor sit amet. " * 30)
    pdf.output(str(path))
    return str(path)


def encrypted_pdf(path, source_pdf: str, user_password: str, algorithm: str) -> str:
    """A copy encrypted with pypdf; an empty ``user_password`` opens without asking."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(source_pdf))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm=algorithm)
    with open(path, "wb") as fh:
        writer.write(fh)
    return str(path)


def image_pdf(path, pages: int = 4, side: int = 600) -> str:
    """Pages that are noise images: a 'scanned' PDF whose pages are big in bytes."""
    import numpy as np
    from fpdf import FPDF

    rng = np.random.default_rng(0)
    pdf = FPDF()
    for _ in range(pages):
        pdf.add_page()
        noise = Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
        pdf.image(noise, x=10, y=10, w=150)
    pdf.output(str(path))
    return str(path)


def truncated_copy(path, source: str, keep: float = 0.5) -> str:
    with open(source, "rb") as fh:
        data = fh.read()
    return write_bytes(path, data[: int(len(data) * keep)])


# --- Images -----------------------------------------------------------------------------

def gradient(width: int = 320, height: int = 200, mode: str = "RGB") -> Image.Image:
    image = Image.linear_gradient("L").resize((width, height))
    if mode == "L":
        return image
    rgb = Image.merge("RGB", (image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image))
    return rgb.convert(mode)


def save_image(path, image: Image.Image, fmt: str, **params) -> str:
    image.save(path, fmt, **params)
    return str(path)


def exif_rotated_jpeg(path, width: int = 320, height: int = 200) -> str:
    """Stored landscape with EXIF orientation 6 (display rotated 90°: portrait)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return save_image(path, gradient(width, height), "JPEG", exif=exif.tobytes())


def animated_gif(path, frames: int = 5) -> str:
    images = [gradient().rotate(15 * n).convert("P") for n in range(frames)]
    images[0].save(path, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return str(path)


def translucent() -> Image.Image:
    """RGBA with an alpha ramp, so encoders cannot drop the alpha channel."""
    image = gradient(mode="RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    return image


def truncated_jpeg(path) -> str:
    """The header and half the scan data: opens and ``verify()``s, fails on full decode."""
    buffer = io.BytesIO()
    gradient(640, 480).save(buffer, "JPEG", quality=95)
    return write_bytes(path, buffer.getvalue()[: buffer.tell() // 2])


def bomb_png(path, width: int = 20_000, height: int = 20_000) -> str:
    """A valid PNG header claiming 400 MP with a tiny (empty) IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return write_bytes(
        path,
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""),
    )


# --- Hostile input (issue 8): broken, lying or odd, each small ------------------------

def one_pixel_video(path, seconds: float = 2) -> str:
    """A valid 1×1 MPEG-4 Part 2 video: must be transcoded, and 1 px halves to 0."""
    _ffmpeg("-f", "lavfi", "-i", f"color=c=red:size=1x1:rate={RATE}", "-t", str(seconds),
            "-c:v", "mpeg4", "-pix_fmt", "yuv420p", str(path))
    return str(path)


def png_bytes(image: Image.Image | None = None) -> bytes:
    buffer = io.BytesIO()
    (image or gradient(64, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def bad_crc_png(path, chunk: bytes = b"IHDR") -> str:
    """A PNG whose ``chunk`` (IHDR or IDAT) checksum is wrong; the pixels are intact."""
    data = bytearray(png_bytes())
    at = data.index(chunk)
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length] ^= 0xFF  # first byte of the chunk's CRC
    return write_bytes(path, bytes(data))


def huge_screen_gif(path) -> str:
    """A tiny GIF whose header claims a 65535×65535 canvas (4.3 G pixels)."""
    buffer = io.BytesIO()
    gradient(8, 8).convert("P").save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", 65535, 65535)
    return write_bytes(path, bytes(data))


def wav_claiming(path, data_bytes: int = 0xFFFFFF00, seconds: float = 1) -> str:
    """A 1 s WAV whose RIFF and data headers claim ``data_bytes`` of samples."""
    with tempfile.TemporaryDirectory() as work:
        data = bytearray(open(audio_file(os.path.join(work, "a.wav"), seconds), "rb").read())
    at = data.index(b"data")
    data[4:8] = struct.pack("<I", min(data_bytes + at, 0xFFFFFFFF))
    data[at + 4 : at + 8] = struct.pack("<I", data_bytes)
    return write_bytes(path, bytes(data))


def wav_header_only(path) -> str:
    """A WAV header with no samples at all."""
    with tempfile.TemporaryDirectory() as work:
        data = open(audio_file(os.path.join(work, "a.wav"), 1), "rb").read()
    return write_bytes(path, data[: data.index(b"data") + 8])


def pdf_claiming_pages(path, pages: int = 999_999_999) -> str:
    """A 2-page PDF whose page tree says ``/Count pages``."""
    with tempfile.TemporaryDirectory() as work:
        data = open(text_pdf(os.path.join(work, "a.pdf"), 2), "rb").read()
    return write_bytes(path, data.replace(b"/Count 2", b"/Count %d" % pages))
