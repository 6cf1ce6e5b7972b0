"""Image → one PNG or JPEG chunk (the only image types the model takes).

PNG and JPEG pass byte-for-byte only after a full decode (``verify()`` misses truncated
JPEGs), when upright, still, RGB/greyscale and within the size caps. Everything else —
WebP, GIF, TIFF, BMP, AVIF, CMYK, EXIF-rotated, animated, oversized — is re-encoded from its
first frame, upright: PNG when it has alpha, else JPEG q90. Images above
``image_max_pixels`` are refused before decoding, as possible decompression bombs.
Chunk checksums are verified first (a PNG with a bad CRC would pass a decode but not a
strict decoder), and a file whose magic bytes name a format Pillow reads but that Pillow
cannot open is ``corrupt_media``; ``unsupported_type`` is kept for formats it cannot read.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

from transforms.chunk_errors import CORRUPT_MEDIA, TOO_LARGE, UNSUPPORTED_TYPE, ChunkingError
from transforms.media.chunk_builder import media_chunk, read_file
from transforms.types import Chunk, Locator, SourceObject

PASS_MODES = {"PNG": {"RGB", "RGBA", "L", "LA", "P"}, "JPEG": {"RGB", "L"}}
MIMES = {"PNG": "image/png", "JPEG": "image/jpeg"}
ORIENTATION_TAG = 0x0112
# No image within image_max_pixels needs more bytes than 16-bit RGBA stored uncompressed;
# a larger file is not read (Pillow reads a chunk whole, whatever size its header claims).
MAX_BYTES_PER_PIXEL = 8
CONTAINER_SLACK_BYTES = 1 << 20
JPEG_QUALITY = 90
SHRINK_STEP = 0.7  # when an encoded image is over the byte cap, shrink sides by this
MIN_SIDE = 64


def _refuse_bombs(im: Image.Image, max_pixels: int) -> None:
    pixels = im.width * im.height
    if pixels > max_pixels:
        raise ChunkingError(
            TOO_LARGE,
            f"{im.width}x{im.height} = {pixels} pixels, over image_max_pixels={max_pixels} "
            "(refused as a possible decompression bomb)",
        )


def _passes(im: Image.Image, stored_side: int, file_bytes: int, settings) -> bool:
    return (
        im.mode in PASS_MODES.get(im.format, ())
        and getattr(im, "n_frames", 1) == 1
        and im.getexif().get(ORIENTATION_TAG, 1) == 1
        and stored_side <= settings.image_max_side
        and file_bytes <= settings.inline_max_bytes
    )


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def _reencode(im: Image.Image, settings) -> tuple[bytes, str]:
    """First frame, upright, RGB(A), within ``image_max_side`` and the byte cap."""
    alpha = _has_alpha(im)
    image = ImageOps.exif_transpose(im).convert("RGBA" if alpha else "RGB")
    side = settings.image_max_side
    while side >= MIN_SIDE:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        if alpha:
            image.save(buffer, "PNG", optimize=True)
        else:
            image.save(buffer, "JPEG", quality=JPEG_QUALITY)
        if buffer.tell() <= settings.inline_max_bytes:
            return buffer.getvalue(), MIMES["PNG" if alpha else "JPEG"]
        side = int(max(image.size) * SHRINK_STEP)
    raise ChunkingError(
        TOO_LARGE, f"cannot encode the image under inline_max_bytes={settings.inline_max_bytes}"
    )


def _pillow_reads(mime: str | None) -> bool:
    Image.init()
    return any(m == mime and fmt in Image.OPEN for fmt, m in Image.MIME.items())


def normalize_image(local_path: str, settings, mime: str | None = None) -> tuple[bytes, str]:
    """``(bytes, mime)`` of a PNG/JPEG the model accepts, checksums verified and decoded
    in full first. ``mime`` is the type the magic bytes gave, if known."""
    size = os.path.getsize(local_path)
    if size == 0:
        raise ChunkingError(CORRUPT_MEDIA, "empty file (0 bytes)")
    if size > settings.image_max_pixels * MAX_BYTES_PER_PIXEL + CONTAINER_SLACK_BYTES:
        raise ChunkingError(
            TOO_LARGE,
            f"{size} bytes: more than any image within image_max_pixels="
            f"{settings.image_max_pixels} can take ({MAX_BYTES_PER_PIXEL} bytes per pixel)",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(local_path) as im:
                im.verify()  # chunk CRCs; the image must be opened again to decode it
            with Image.open(local_path) as im:
                _refuse_bombs(im, settings.image_max_pixels)
                stored_side = max(im.size)
                if im.format == "JPEG" and stored_side > settings.image_max_side:
                    # Decode at a DCT-scaled size no smaller than needed: faster, less memory.
                    scale = settings.image_max_side / max(im.size)
                    im.draft("RGB", (int(im.width * scale) + 1, int(im.height * scale) + 1))
                im.load()
                if _passes(im, stored_side, size, settings):
                    return read_file(local_path), MIMES[im.format]
                return _reencode(im, settings)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ChunkingError(TOO_LARGE, f"refused as a possible decompression bomb: {err}") from err
    except UnidentifiedImageError as err:
        if _pillow_reads(mime):
            raise ChunkingError(
                CORRUPT_MEDIA, f"the {mime} header is damaged: Pillow cannot open it"
            ) from err
        raise ChunkingError(
            UNSUPPORTED_TYPE,
            "Pillow cannot identify this image format" + (f" ({mime})" if mime else ""),
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ChunkingError(CORRUPT_MEDIA, f"the image does not decode: {err}") from err
    except ChunkingError:
        raise
    except Exception as err:  # damaged files also trip decoders' own bugs (TypeError, struct.error...)
        raise ChunkingError(
            CORRUPT_MEDIA, f"the image does not decode: {type(err).__name__}: {err}"
        ) from err


def chunk_image(source: SourceObject, local_path: str, settings) -> Iterator[Chunk]:
    """Yield the one chunk of an image."""
    data, mime = normalize_image(local_path, settings, source.mime_type)
    yield media_chunk(source, settings, "image", mime, Locator(), data)
