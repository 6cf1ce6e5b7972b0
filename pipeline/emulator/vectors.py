"""Deterministic, content-derived embeddings: featurisers per modality.

Text is featurised by signed feature hashing (blake2b with a fixed key, never Python's
salted ``hash()``) of word unigrams, bigrams and character 3/4-grams into 3,072 dims, so
texts sharing words and word stems land near each other. Each feature lands once in every
nested band (128, 256, 512, 768, 1536, 3072), so Matryoshka prefixes stay meaningful.
Embedding-2 prompt prefixes are stripped first, so a query and the document it asks
about share features.

Media goes through ``MEDIA_HANDLERS``, a registry keyed by modality. Each handler takes
the raw bytes and returns a raw feature vector plus its token count, or raises a 400.
Images are decoded with Pillow (thumbnail + colour statistics, randomly projected), PDFs
are featurised by their extracted text, and audio/video are featurised by a content
hash until real decoding lands (replace their entries in ``MEDIA_HANDLERS``; the
duration limits ``audio_seconds``/``video_seconds`` are to be enforced there).
"""
from __future__ import annotations

import functools
import hashlib
import io
import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from pipeline.emulator.errors import invalid_argument
from transforms.settings import ModelLimits

DIM = 3072
_KEY = b"embedpipe-emulator-v1"
_STOPWORDS = frozenset(
    "a an and are as at be but by for from has have how i in into is it its of on or "
    "so that the their this to was were what when which who why will with you your".split()
)
_WORD = re.compile(r"\w+")
_QUERY_PREFIX = re.compile(r"^\s*task:\s*[^|]*\|\s*query:\s*", re.IGNORECASE | re.DOTALL)
_DOC_PREFIX = re.compile(r"^\s*title:\s*(?P<title>[^|]*?)\s*\|\s*text:\s*", re.IGNORECASE | re.DOTALL)

# Byte-rate assumptions for the size-based audio/video token heuristic (no decoding yet):
# 128 kbit/s audio and 2 Mbit/s video.
_AUDIO_BYTES_PER_SECOND = 16_000
_VIDEO_BYTES_PER_SECOND = 250_000


@dataclass(frozen=True)
class MediaResult:
    """A media part's raw (unnormalised) features and the tokens it is billed for."""

    vector: np.ndarray
    tokens: int


MediaHandler = Callable[[bytes, str, ModelLimits, Mapping[str, float]], MediaResult]


def strip_prompt_prefix(text: str) -> str:
    """Drop ``task: x | query:`` / ``title: t | text:`` scaffolding, keeping title words."""
    match = _QUERY_PREFIX.match(text)
    if match:
        return text[match.end():]
    match = _DOC_PREFIX.match(text)
    if match:
        title = match.group("title").strip()
        rest = text[match.end():]
        return rest if title.lower() in ("", "none") else f"{title}\n{rest}"
    return text


# Nested bands: each feature is hashed once into every band, so any Matryoshka prefix
# (>= 128 dims) carries every feature and a short text never truncates to all zeros.
_BANDS = ((0, 128), (128, 256), (256, 512), (512, 768), (768, 1536), (1536, DIM))


@functools.lru_cache(maxsize=1 << 20)
def _slots(feature: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Stable (indices, signs) of one feature, one per band; cached (n-grams repeat a lot)."""
    digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=64, key=_KEY).digest()
    indices, signs = [], []
    for band, (start, end) in enumerate(_BANDS):
        value = int.from_bytes(digest[band * 8:band * 8 + 8], "little")
        indices.append(start + value % (end - start))
        signs.append(1.0 if value >> 63 else -1.0)
    return tuple(indices), tuple(signs)


def text_vector(text: str) -> np.ndarray:
    """Raw hashed features of ``text`` (after prompt-prefix stripping); zero if empty."""
    body = strip_prompt_prefix(text).lower()
    words = _WORD.findall(body)
    index: list[int] = []
    weight: list[float] = []

    def add(feature: str, w: float) -> None:
        slots, signs = _slots(feature)
        index.extend(slots)
        weight.extend(sign * w for sign in signs)

    for i, word in enumerate(words):
        w = 0.25 if word in _STOPWORDS else 1.0
        add("w:" + word, w)
        if i:
            prev_w = 0.25 if words[i - 1] in _STOPWORDS else 1.0
            add("b:" + words[i - 1] + " " + word, 0.5 * min(w, prev_w))
        padded = f"<{word}>"
        for n in (3, 4):
            for j in range(len(padded) - n + 1):
                add(f"c{n}:" + padded[j:j + n], 0.25 * w)
    stripped = body.strip()
    if not index and stripped:  # punctuation or symbols only: still a stable vector
        add("raw:" + stripped, 1.0)
    vec = np.zeros(DIM)
    np.add.at(vec, np.asarray(index, dtype=np.int64), np.asarray(weight))
    return vec


def _hash_vector(data: bytes, namespace: str) -> np.ndarray:
    """A pseudo-random direction fixed by the content hash: same bytes, same vector."""
    digest = hashlib.blake2b(data, digest_size=16, key=_KEY, person=namespace.encode()[:16])
    rng = np.random.default_rng(int.from_bytes(digest.digest(), "little"))
    return rng.standard_normal(DIM)


@functools.cache
def _image_projection(n_features: int) -> np.ndarray:
    """Fixed Gaussian projection of image statistics into the embedding space."""
    rng = np.random.default_rng(20240917)
    return rng.standard_normal((n_features, DIM)) / math.sqrt(n_features)


def featurise_image(data: bytes, mime_type: str, limits: ModelLimits,
                    tokens_per_unit: Mapping[str, float]) -> MediaResult:
    """Thumbnail structure + colour histogram + channel statistics, projected to 3,072-d.

    Area-averaged thumbnails and histograms barely move under resizing, re-encoding or a
    small brightness change, so similar images land near each other.
    """
    if mime_type not in limits.image_mime_types:
        raise invalid_argument(
            f"Unsupported MIME type for images: {mime_type} "
            f"(supported: {', '.join(limits.image_mime_types)})"
        )
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
    except Exception as exc:  # Pillow raises many types for corrupt input
        raise invalid_argument(f"Unable to process input image: {type(exc).__name__}") from exc
    thumb = np.asarray(rgb.resize((8, 8), Image.Resampling.BOX), dtype=np.float64) / 255.0
    small = np.asarray(rgb.resize((32, 32), Image.Resampling.BOX), dtype=np.int64)
    bins = (small // 64).reshape(-1, 3)
    hist = np.bincount(bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2], minlength=64) / len(bins)
    pixels = np.asarray(rgb.resize((64, 64), Image.Resampling.BOX), dtype=np.float64) / 255.0
    stats = np.concatenate([pixels.mean(axis=(0, 1)) - 0.5, pixels.std(axis=(0, 1))])
    features = np.concatenate([
        (thumb - thumb.mean()).ravel() * 2.0,
        (hist - 1.0 / 64) * 4.0,
        stats * 2.0,
    ])
    vec = features @ _image_projection(features.size)
    # A shared image direction: unrelated images are a little closer than image vs text.
    vec = vec / (np.linalg.norm(vec) or 1.0) + 0.3 * _hash_vector(b"modality", "image") / math.sqrt(DIM)
    return MediaResult(vec, int(tokens_per_unit["image"]))


def featurise_pdf(data: bytes, mime_type: str, limits: ModelLimits,
                  tokens_per_unit: Mapping[str, float]) -> MediaResult:
    """Extract text with pypdf and featurise it like text; bill per page."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            reader.decrypt("")
        pages = len(reader.pages)
    except Exception as exc:
        raise invalid_argument(f"Unable to process input PDF: {type(exc).__name__}") from exc
    if pages > limits.pdf_pages:
        raise invalid_argument(
            f"The PDF has {pages} pages, more than the maximum of {limits.pdf_pages} pages."
        )
    try:
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except Exception as exc:
        raise invalid_argument(f"Unable to process input PDF: {type(exc).__name__}") from exc
    vec = text_vector(text) if text.strip() else np.zeros(DIM)
    if not vec.any():  # scanned or empty pages: fall back to the bytes
        vec = _hash_vector(data, "pdf")
    return MediaResult(vec, int(math.ceil(pages * tokens_per_unit["pdf_page"])))


def sized_media_tokens(modality: str, size_bytes: int, tokens_per_unit: Mapping[str, float]) -> int:
    """Audio/video tokens from the byte size (a duration guess at a typical bit rate)."""
    if modality == "audio":
        seconds, rate = size_bytes / _AUDIO_BYTES_PER_SECOND, tokens_per_unit["audio_second"]
    else:
        seconds, rate = size_bytes / _VIDEO_BYTES_PER_SECOND, tokens_per_unit["video_second"]
    return max(1, math.ceil(seconds * rate))


def featurise_audio(data: bytes, mime_type: str, limits: ModelLimits,
                    tokens_per_unit: Mapping[str, float]) -> MediaResult:
    """Content-hash placeholder until audio is decoded (hook: replace in MEDIA_HANDLERS)."""
    return MediaResult(_hash_vector(data, "audio"), sized_media_tokens("audio", len(data), tokens_per_unit))


def featurise_video(data: bytes, mime_type: str, limits: ModelLimits,
                    tokens_per_unit: Mapping[str, float]) -> MediaResult:
    """Content-hash placeholder until video is decoded (hook: replace in MEDIA_HANDLERS)."""
    return MediaResult(_hash_vector(data, "video"), sized_media_tokens("video", len(data), tokens_per_unit))


MEDIA_HANDLERS: dict[str, MediaHandler] = {
    "image": featurise_image,
    "pdf": featurise_pdf,
    "audio": featurise_audio,
    "video": featurise_video,
}


def modality_of(mime_type: str) -> str | None:
    """Map a MIME type to a ``MEDIA_HANDLERS`` key (None when unsupported)."""
    mime = mime_type.split(";")[0].strip().lower()
    if mime == "application/pdf":
        return "pdf"
    major = mime.split("/")[0]
    return major if major in ("image", "audio", "video") else None


def combine(part_vectors: list[np.ndarray]) -> np.ndarray:
    """Fold the parts of one Content into one unit vector (each part weighs the same)."""
    total = np.zeros(DIM)
    for vec in part_vectors:
        norm = np.linalg.norm(vec)
        if norm > 0:
            total += vec / norm
    norm = np.linalg.norm(total)
    if norm == 0:
        raise invalid_argument("The input content is empty.")
    return total / norm
