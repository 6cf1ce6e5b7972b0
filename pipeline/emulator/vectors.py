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
are featurised by their extracted text. Audio and video are decoded with the bundled
ffmpeg (``media_probe.py``): audio becomes log-mel spectral statistics (16 kHz mono),
video a few evenly spaced 32x32 frames featurised like image thumbnails plus its audio
track. Their duration is the packet span, as a strict service measures it: longer than
``audio_seconds`` / ``video_seconds`` (``video_with_audio_seconds`` with an audio stream)
by more than 0.5 s is a 400, and they are billed ``tokens_per_unit`` audio_second /
video_second per second of it. Analysed audio/video is kept in a small LRU keyed by a
content digest, so a file referenced by many requests is decoded once.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import io
import math
import re
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from pipeline.emulator.errors import invalid_argument
from pipeline.emulator.media_probe import SAMPLE_RATE, MediaError, MediaFile, Streams
from transforms.settings import ModelLimits

DIM = 3072
_KEY = b"embedpipe-emulator-v1"
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have how i in into is it its of on or "
    "so that the their this to was were what when which who why will with you your".split()
)
WORD = re.compile(r"\w+")
_QUERY_PREFIX = re.compile(r"^\s*task:\s*[^|]*\|\s*query:\s*", re.IGNORECASE | re.DOTALL)
_DOC_PREFIX = re.compile(r"^\s*title:\s*(?P<title>[^|]*?)\s*\|\s*text:\s*", re.IGNORECASE | re.DOTALL)

# Byte-rate assumptions of the create-time quota estimate for audio/video (which does not
# decode): 128 kbit/s audio and 2 Mbit/s video. Billing uses the measured duration.
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
def _slots(feature: str, key: bytes = _KEY) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Stable (indices, signs) of one feature, one per band; cached (n-grams repeat a lot).
    ``key`` names the vector space: another key scatters the same feature elsewhere."""
    digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=64, key=key).digest()
    indices, signs = [], []
    for band, (start, end) in enumerate(_BANDS):
        value = int.from_bytes(digest[band * 8:band * 8 + 8], "little")
        indices.append(start + value % (end - start))
        signs.append(1.0 if value >> 63 else -1.0)
    return tuple(indices), tuple(signs)


def hashed_vector(features: Iterable[tuple[str, float]], key: bytes = _KEY) -> np.ndarray:
    """Signed feature hashing of weighted features into every Matryoshka band (raw sum)."""
    index: list[int] = []
    weight: list[float] = []
    for feature, w in features:
        slots, signs = _slots(feature, key)
        index.extend(slots)
        weight.extend(sign * w for sign in signs)
    vec = np.zeros(DIM)
    np.add.at(vec, np.asarray(index, dtype=np.int64), np.asarray(weight))
    return vec


def word_weight(word: str) -> float:
    """Stopwords count a quarter: they are in every text and say little about any."""
    return 0.25 if word in STOPWORDS else 1.0


def _text_features(words: list[str]) -> Iterator[tuple[str, float]]:
    for i, word in enumerate(words):
        w = word_weight(word)
        yield "w:" + word, w
        if i:
            yield "b:" + words[i - 1] + " " + word, 0.5 * min(w, word_weight(words[i - 1]))
        padded = f"<{word}>"
        for n in (3, 4):
            for j in range(len(padded) - n + 1):
                yield f"c{n}:" + padded[j:j + n], 0.25 * w


def text_vector(text: str) -> np.ndarray:
    """Raw hashed features of ``text`` (after prompt-prefix stripping); zero if empty."""
    body = strip_prompt_prefix(text).lower()
    words = WORD.findall(body)
    if words:
        return hashed_vector(_text_features(words))
    stripped = body.strip()  # punctuation or symbols only: still a stable vector
    return hashed_vector([("raw:" + stripped, 1.0)] if stripped else [])


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
    pixels = np.asarray(rgb.resize((64, 64), Image.Resampling.BOX), dtype=np.float64) / 255.0
    features = _pixel_features(thumb, small, pixels)
    vec = features @ _image_projection(features.size)
    # A shared image direction: unrelated images are a little closer than image vs text.
    vec = vec / (np.linalg.norm(vec) or 1.0) + _modality_direction("image")
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
    """Audio/video tokens guessed from the byte size at a typical bit rate, no decoding.

    Only the create-time quota estimate uses this; billing uses the measured duration.
    """
    if modality == "audio":
        seconds, rate = size_bytes / _AUDIO_BYTES_PER_SECOND, tokens_per_unit["audio_second"]
    else:
        seconds, rate = size_bytes / _VIDEO_BYTES_PER_SECOND, tokens_per_unit["video_second"]
    return max(1, math.ceil(seconds * rate))


# -- audio and video: decoded with the bundled ffmpeg (pipeline/emulator/media_probe.py) ----
DURATION_TOLERANCE_SECONDS = 0.5
"""Slack over ``audio_seconds``/``video_seconds`` before a part is rejected."""
VIDEO_FRAMES = 8
"""Evenly spaced frames sampled per video."""
_KEYFRAMES_FOR_FAST_DECODE = 2 * VIDEO_FRAMES
"""With at least this many keyframes, frames are sampled from keyframes only (fast)."""
_AUDIO_WEIGHT_IN_VIDEO = 0.5
_MODALITY_WEIGHT = 0.3
_N_FFT, _HOP, _N_MELS = 512, 256, 40
_DYNAMIC_RANGE = 1e-8  # mel energies are floored 80 dB below the loudest band


@functools.cache
def _mel_filterbank() -> np.ndarray:
    """(n_mels, n_fft/2 + 1) triangular filters, mel-spaced from 0 Hz to Nyquist."""
    def mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / SAMPLE_RATE)
    edges = hz(np.linspace(0.0, mel(SAMPLE_RATE / 2), _N_MELS + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None)


@functools.cache
def _projection(name: str, n_features: int) -> np.ndarray:
    """A fixed Gaussian projection into the embedding space, one per feature family."""
    seed = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8, key=_KEY).digest(), "little")
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_features, DIM)) / math.sqrt(n_features)


def audio_vector(pcm: np.ndarray) -> np.ndarray:
    """Unit vector of a 16 kHz mono signal: log-mel spectral statistics, projected.

    Per 32 ms frame (16 ms hop, Hann window) the power spectrum is pooled into 40 mel
    bands and log-compressed with an 80 dB floor under the loudest band (so loudness does
    not matter); the features are the time-averaged spectral shape (mean removed), the
    per-band standard deviation over time, and the mean frame-to-frame change (texture).
    Re-encoding or a slightly detuned tone keeps them; a different sound does not.
    """
    signal = np.asarray(pcm, dtype=np.float64)
    if signal.size < _N_FFT:
        signal = np.pad(signal, (0, _N_FFT - signal.size))
    frames = np.lib.stride_tricks.sliding_window_view(signal, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * np.hanning(_N_FFT), axis=1)) ** 2
    bands = power @ _mel_filterbank().T
    floor = max(float(bands.max()) * _DYNAMIC_RANGE, 1e-12)
    log_mel = np.log(bands + floor)
    mean = log_mel.mean(axis=0)
    spread = log_mel.std(axis=0)
    change = np.abs(np.diff(log_mel, axis=0)).mean(axis=0) if len(log_mel) > 1 else np.zeros(_N_MELS)
    features = np.concatenate([mean - mean.mean(), spread, change])
    vec = features @ _projection("audio-log-mel", features.size)
    norm = np.linalg.norm(vec)
    return vec / norm if norm > 0 else vec  # digital silence: no spectral shape at all


def _pixel_features(thumb: np.ndarray, small: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Image statistics shared by images and video frames (one image, or a leading frame axis).

    ``thumb``: 8x8 RGB in [0, 1]; ``small``: 32x32 RGB uint8 values (colour histogram);
    ``pixels``: RGB in [0, 1] for the channel mean and spread.
    """
    lead = thumb.shape[:-3]
    centred = thumb - thumb.mean(axis=(-3, -2, -1), keepdims=True)
    bins = (np.asarray(small, dtype=np.int64) // 64).reshape(*lead, -1, 3)
    codes = bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]
    hist = (codes[..., None] == np.arange(64)).mean(axis=-2)
    stats = np.concatenate([pixels.mean(axis=(-3, -2)) - 0.5, pixels.std(axis=(-3, -2))], axis=-1)
    return np.concatenate([
        centred.reshape(*lead, -1) * 2.0,
        (hist - 1.0 / 64) * 4.0,
        stats * 2.0,
    ], axis=-1)


def frames_vector(frames: np.ndarray) -> np.ndarray:
    """Unit vector of sampled 32x32 RGB frames: image features averaged, plus motion.

    Each frame gets the image featuriser's statistics (8x8 area thumbnail, 64-bin colour
    histogram, channel mean/spread) through the same projection, so a still video lands
    near the picture it shows; the per-pixel spread of the thumbnails over time adds motion.
    """
    pixels = np.asarray(frames, dtype=np.float64) / 255.0
    n, side = pixels.shape[0], pixels.shape[1]
    block = side // 8
    thumbs = pixels.reshape(n, 8, block, 8, block, 3).mean(axis=(2, 4))
    per_frame = _pixel_features(thumbs, frames, pixels)
    mean = per_frame.mean(axis=0)
    motion = thumbs.std(axis=0).ravel() * 2.0
    vec = mean @ _image_projection(mean.size) + motion @ _projection("video-motion", motion.size)
    norm = np.linalg.norm(vec)
    return vec / norm if norm > 0 else vec


def _modality_direction(modality: str) -> np.ndarray:
    """A shared direction per modality: unrelated media of one kind are a little closer."""
    return _MODALITY_WEIGHT * _hash_vector(b"modality", modality) / math.sqrt(DIM)


@dataclass(frozen=True)
class _Measured:
    streams: Streams
    vector: np.ndarray


class _LruCache:
    """Thread-safe LRU of analysed media by content digest (featurising is deterministic)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: collections.OrderedDict[tuple, _Measured] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> _Measured | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, item: _Measured) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_MEDIA_CACHE = _LruCache(128)


def clear_media_cache() -> None:
    """Forget analysed audio/video (tests use it to make every call decode afresh)."""
    _MEDIA_CACHE.clear()


def _measured_seconds(modality: str, streams: Streams) -> float:
    """Billed and limited duration: the audio track for audio, every stream for video."""
    return streams.audio_seconds if modality == "audio" else streams.span_seconds


def _enforce_duration(modality: str, streams: Streams, limits: ModelLimits) -> None:
    seconds = _measured_seconds(modality, streams)
    if modality == "audio":
        limit, what = limits.audio_seconds, "audio"
    elif streams.has_audio:
        limit, what = limits.video_with_audio_seconds, "video with audio"
    else:
        limit, what = limits.video_seconds, "video"
    if seconds > limit + DURATION_TOLERANCE_SECONDS:
        raise invalid_argument(
            f"The {modality} input is {seconds:.2f} seconds long, longer than the maximum of "
            f"{limit:g} seconds for {what} on models/{limits.model}."
        )


def _analyse(data: bytes, mime_type: str, modality: str, limits: ModelLimits) -> _Measured:
    """Measure (packet span), enforce the duration limit, then decode and featurise."""
    key = (hashlib.blake2b(data, digest_size=20, key=_KEY).digest(), modality)
    cached = _MEDIA_CACHE.get(key)
    if cached is not None:
        _enforce_duration(modality, cached.streams, limits)
        return cached
    try:
        with MediaFile(data, mime_type) as media:
            streams = media.measure()
            if modality == "audio" and not streams.has_audio:
                raise MediaError("no audio stream found")
            _enforce_duration(modality, streams, limits)
            frames = VIDEO_FRAMES if modality == "video" and streams.has_video else 0
            decoded = media.decode(
                audio=streams.has_audio, frames=frames, video_seconds=streams.video_seconds,
                keyframes_only=len(streams.keyframes) >= _KEYFRAMES_FOR_FAST_DECODE,
            )
    except MediaError as exc:
        raise invalid_argument(f"Unable to process input {modality} ({mime_type}): {exc}") from None
    if modality == "audio":
        vec = audio_vector(decoded.pcm) + _modality_direction("audio")
    else:
        vec = _modality_direction("video")
        if decoded.frames is not None:
            vec = vec + frames_vector(decoded.frames)
        if decoded.pcm is not None:
            weight = _AUDIO_WEIGHT_IN_VIDEO if decoded.frames is not None else 1.0
            vec = vec + weight * audio_vector(decoded.pcm)
    measured = _Measured(streams, vec)
    _MEDIA_CACHE.put(key, measured)
    return measured


def _duration_tokens(seconds: float, rate: float) -> int:
    return max(1, math.ceil(seconds * rate - 1e-9))


def featurise_audio(data: bytes, mime_type: str, limits: ModelLimits,
                    tokens_per_unit: Mapping[str, float]) -> MediaResult:
    """Decoded audio: log-mel statistics; billed ``audio_second`` per second of packet span.

    Longer than ``audio_seconds`` (+0.5 s) or undecodable: 400 INVALID_ARGUMENT.
    """
    measured = _analyse(data, mime_type, "audio", limits)
    seconds = _measured_seconds("audio", measured.streams)
    return MediaResult(measured.vector.copy(), _duration_tokens(seconds, tokens_per_unit["audio_second"]))


def featurise_video(data: bytes, mime_type: str, limits: ModelLimits,
                    tokens_per_unit: Mapping[str, float]) -> MediaResult:
    """Decoded video: sampled frames (+ the audio track); ``video_second`` per second of span.

    Longer than ``video_seconds`` (``video_with_audio_seconds`` with an audio stream,
    +0.5 s) or undecodable: 400 INVALID_ARGUMENT.
    """
    measured = _analyse(data, mime_type, "video", limits)
    seconds = _measured_seconds("video", measured.streams)
    return MediaResult(measured.vector.copy(), _duration_tokens(seconds, tokens_per_unit["video_second"]))


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
