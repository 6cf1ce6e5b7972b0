"""Image normalisation on Pillow-generated files; output checked from raw headers."""
from __future__ import annotations

import io
import os

import pytest
from PIL import Image

import media_factory as mf
from independent_probes import image_format_size, part_bytes
from transforms.chunk_errors import ChunkingError
from transforms.media.image import chunk_image
from transforms.types import SourceObject


def source_for(path: str, generation: str = "1") -> SourceObject:
    return SourceObject(
        uri=f"gs://bucket/{os.path.basename(path)}",
        size_bytes=os.path.getsize(path),
        generation=generation,
        detected_type="image",
    )


def only_chunk(path: str, **settings):
    (chunk,) = chunk_image(source_for(path), path, mf.small_settings(**settings))
    assert chunk.modality == "image" and chunk.locator.unit == "none" and chunk.est_tokens == 258
    data = part_bytes(chunk)
    fmt, width, height = image_format_size(data)
    assert chunk.mime_type == {"PNG": "image/png", "JPEG": "image/jpeg"}[fmt]
    return chunk, data, (fmt, width, height)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("image")
    files = {
        "png": mf.save_image(d / "plain.png", mf.gradient(), "PNG"),
        "jpeg": mf.save_image(d / "plain.jpg", mf.gradient(), "JPEG", quality=85),
        "grey_jpeg": mf.save_image(d / "grey.jpg", mf.gradient(mode="L"), "JPEG"),
        "cmyk_jpeg": mf.save_image(d / "cmyk.jpg", mf.gradient(mode="CMYK"), "JPEG"),
        "exif_rotated": mf.exif_rotated_jpeg(d / "rotated.jpg", 320, 200),
        "animated_gif": mf.animated_gif(d / "anim.gif"),
        "rgba_png": mf.save_image(d / "alpha.png", mf.translucent(), "PNG"),
        "webp": mf.save_image(d / "photo.webp", mf.gradient(), "WEBP"),
        "webp_alpha": mf.save_image(d / "alpha.webp", mf.translucent(), "WEBP"),
        "tiff": mf.save_image(d / "scan.tiff", mf.gradient(), "TIFF"),
        "bmp": mf.save_image(d / "old.bmp", mf.gradient(), "BMP"),
        "big_jpeg": mf.save_image(d / "big.jpg", mf.gradient(1600, 1000), "JPEG"),
        "truncated_jpeg": mf.truncated_jpeg(d / "truncated.jpg"),
        "bomb_png": mf.bomb_png(d / "bomb.png"),
        "text": mf.text_file(d / "notes.png"),
        "zero": mf.write_bytes(d / "zero.png", b""),
    }
    files["avif"] = mf.save_image(d / "photo.avif", mf.gradient(), "AVIF")  # Pillow >= 11
    return files


@pytest.mark.parametrize("name", ["png", "jpeg", "grey_jpeg"])
def test_png_and_jpeg_pass_byte_for_byte(media, name):
    _, data, _ = only_chunk(media[name])
    with open(media[name], "rb") as fh:
        assert data == fh.read()


@pytest.mark.parametrize(
    "name, fmt, size",
    [
        ("cmyk_jpeg", "JPEG", (320, 200)),
        ("exif_rotated", "JPEG", (200, 320)),  # turned upright, so portrait
        ("animated_gif", "JPEG", (320, 200)),  # first frame
        ("rgba_png", "PNG", (320, 200)),  # alpha kept
        ("webp", "JPEG", (320, 200)),
        ("webp_alpha", "PNG", (320, 200)),
        ("tiff", "JPEG", (320, 200)),
        ("bmp", "JPEG", (320, 200)),
        ("avif", "JPEG", (320, 200)),
    ],
)
def test_other_images_are_converted(media, name, fmt, size):
    _, data, (got_fmt, width, height) = only_chunk(media[name])
    assert (got_fmt, (width, height)) == (fmt, size)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == ("RGBA" if fmt == "PNG" else "RGB")
        assert im.getexif().get(0x0112, 1) == 1


def test_oversized_images_are_downscaled(media):
    _, _, (fmt, width, height) = only_chunk(media["big_jpeg"], image_max_side=256)
    assert (fmt, max(width, height)) == ("JPEG", 256) and width / height == pytest.approx(1.6, abs=0.02)


def test_images_over_the_byte_cap_shrink_until_they_fit(media):
    cap = 6_000
    _, data, (_, width, _) = only_chunk(media["big_jpeg"], inline_max_bytes=cap)
    assert len(data) <= cap and width < 1600


@pytest.mark.parametrize(
    "name, settings, error_class, fragment",
    [
        ("truncated_jpeg", {}, "corrupt_media", "truncated"),
        ("bomb_png", {}, "too_large", "decompression bomb"),
        ("png", {"image_max_pixels": 10_000}, "too_large", "image_max_pixels"),
        ("text", {}, "unsupported_type", "cannot identify"),
        ("zero", {}, "corrupt_media", "empty file"),
    ],
)
def test_bad_images(media, name, settings, error_class, fragment):
    with pytest.raises(ChunkingError) as caught:
        only_chunk(media[name], **settings)
    assert caught.value.error_class == error_class
    assert fragment in caught.value.message


def test_chunk_ids_are_stable(media):
    first, _, _ = only_chunk(media["webp"])
    again, _, _ = only_chunk(media["webp"])
    assert first.chunk_id == again.chunk_id
    (other,) = chunk_image(source_for(media["webp"], "2"), media["webp"], mf.small_settings())
    assert other.chunk_id != first.chunk_id
