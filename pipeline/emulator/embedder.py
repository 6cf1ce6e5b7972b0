"""One EmbedContentRequest in, one vector out: field parsing, limits, featurisation.

Shared by the synchronous endpoints and the batch worker so a request is judged the
same way in both; in a batch a raised ``ApiError`` becomes that line's error status.
Accepts snake_case and camelCase (proto-JSON) field names everywhere.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from pipeline.emulator.errors import ApiError, invalid_argument, not_found
from pipeline.emulator.text_spaces import task_fields, text_space
from pipeline.emulator.tokenizer import count_tokens
from pipeline.emulator.vectors import (
    DIM, MEDIA_HANDLERS, combine, modality_of, sized_media_tokens,
)
from transforms.settings import ModelLimits

FileResolver = Callable[[str], "tuple[bytes, str]"]
"""Maps a ``file_uri`` to (bytes, mime type) of an uploaded file, or raises a 400."""

_HEAVY_MEDIA = ("audio", "video", "pdf")


def pick(obj: Mapping, *names: str):
    """First present field among alternative spellings (snake_case, camelCase)."""
    for name in names:
        if name in obj:
            return obj[name]
    return None


def model_id(model: str) -> str:
    """``models/gemini-embedding-2`` and ``gemini-embedding-2`` name the same model."""
    return model[len("models/"):] if model.startswith("models/") else model


@dataclass(frozen=True)
class Embedding:
    values: np.ndarray  # float32, the requested dimensionality
    token_count: int


@dataclass(frozen=True)
class _Part:
    modality: str  # text | image | pdf | audio | video
    text: str = ""
    mime_type: str = ""
    data: bytes = b""


class Embedder:
    """Validates requests against ``ModelLimits`` and computes their embeddings."""

    def __init__(self, limits_by_model: Mapping[str, ModelLimits],
                 tokens_per_unit: Mapping[str, float], resolve_file: FileResolver) -> None:
        self._limits = dict(limits_by_model)
        self._rates = dict(tokens_per_unit)
        self._resolve = resolve_file

    def limits_for(self, model: str, api_version: str = "v1beta") -> ModelLimits:
        limits = self._limits.get(model_id(model))
        if limits is None:
            raise not_found(
                f"models/{model_id(model)} is not found for API version {api_version}, or is "
                "not supported for embedContent. Call ListModels to see the list of available "
                "models and their supported methods."
            )
        return limits

    def embed(self, model: str, request: object) -> Embedding:
        """Embed one request for ``model`` (already known to exist); raises a 400 ApiError."""
        limits = self.limits_for(model)
        if not isinstance(request, Mapping):
            raise invalid_argument("Invalid EmbedContentRequest: expected a JSON object.")
        self._check_model(model, request)
        task, title = task_fields(request)
        dims = self._dimensionality(request, limits)
        parts, inline_bytes = self._parts(request, limits)
        if inline_bytes > limits.inline_request_bytes:
            raise invalid_argument(
                f"Request payload size ({inline_bytes} bytes) exceeds the limit of "
                f"{limits.inline_request_bytes} bytes."
            )
        images = sum(p.modality == "image" for p in parts)
        if images > limits.images_per_request:
            raise invalid_argument(
                f"Too many images in the request: {images} (maximum {limits.images_per_request})."
            )
        heavy = sum(p.modality in _HEAVY_MEDIA for p in parts)
        if heavy > limits.max_parts_media:
            raise invalid_argument(
                f"Too many audio, video or PDF parts in the request: {heavy} "
                f"(maximum {limits.max_parts_media})."
            )
        text = "\n".join(p.text for p in parts if p.modality == "text")
        text_tokens = count_tokens(text)
        if text_tokens > limits.text_tokens:
            raise invalid_argument(
                f"The input token count ({text_tokens}) exceeds the maximum number of tokens "
                f"allowed ({limits.text_tokens})."
            )
        vectors = [text_space(limits.model)(text, task, title)] if text.strip() else []
        tokens = text_tokens
        for part in parts:
            if part.modality != "text":
                result = MEDIA_HANDLERS[part.modality](part.data, part.mime_type, limits, self._rates)
                vectors.append(result.vector)
                tokens += result.tokens
        full = combine(vectors)
        # Matryoshka: a prefix of the unit 3,072-d vector, NOT renormalised (as documented).
        return Embedding(full[:dims].astype(np.float32), tokens)

    def estimate_tokens(self, model: str, request: object) -> int:
        """Cheap token estimate for quota accounting at create time; malformed requests count 0.

        Nothing is decoded here (a batch may hold thousands of media lines and create is
        synchronous): audio/video are guessed from their byte size at a typical bit rate,
        PDFs at the page limit. ``embed`` bills the measured duration / page count.
        """
        try:
            limits = self.limits_for(model)
            parts = pick(pick(request, "content") or {}, "parts") or []
            total = 0
            for part in parts:
                if "text" in part:
                    total += count_tokens(str(part["text"]))
                    continue
                blob = pick(part, "inline_data", "inlineData")
                if blob is not None:
                    mime = pick(blob, "mime_type", "mimeType") or ""
                    size = len(pick(blob, "data") or "") * 3 // 4
                else:
                    ref = pick(part, "file_data", "fileData") or {}
                    data, file_mime = self._resolve(str(pick(ref, "file_uri", "fileUri") or ""))
                    mime, size = pick(ref, "mime_type", "mimeType") or file_mime, len(data)
                total += self._media_estimate(modality_of(mime), size, limits)
            return total
        except (ApiError, TypeError, AttributeError):
            return 0

    def _media_estimate(self, modality: str | None, size: int, limits: ModelLimits) -> int:
        if modality == "image":
            return int(self._rates["image"])
        if modality == "pdf":  # without parsing: assume the page limit
            return int(limits.pdf_pages * self._rates["pdf_page"])
        if modality in ("audio", "video"):  # no decoding at create time: a bit-rate guess
            return sized_media_tokens(modality, size, self._rates)
        return 0

    @staticmethod
    def _check_model(model: str, request: Mapping) -> None:
        inner = pick(request, "model")
        if inner is not None and model_id(str(inner)) != model_id(model):
            raise invalid_argument(
                f"Model in the request ({inner}) does not match the model in the URL "
                f"(models/{model_id(model)})."
            )

    @staticmethod
    def _dimensionality(request: Mapping, limits: ModelLimits) -> int:
        raw = pick(request, "output_dimensionality", "outputDimensionality")
        if raw is None:
            return min(DIM, limits.dimensionality_max)
        try:
            if isinstance(raw, bool):
                raise ValueError
            dims = int(raw)
            if dims != float(raw):
                raise ValueError
        except (TypeError, ValueError):
            raise invalid_argument(f"Invalid output_dimensionality: {raw!r}") from None
        if not limits.dimensionality_min <= dims <= min(DIM, limits.dimensionality_max):
            raise invalid_argument(
                f"output_dimensionality must be between {limits.dimensionality_min} and "
                f"{limits.dimensionality_max}, got {dims}."
            )
        return dims

    def _parts(self, request: Mapping, limits: ModelLimits) -> tuple[list[_Part], int]:
        content = pick(request, "content")
        parts = pick(content, "parts") if isinstance(content, Mapping) else None
        if not isinstance(parts, list) or not parts:
            raise invalid_argument("* EmbedContentRequest.content: contents.parts must not be empty.")
        out: list[_Part] = []
        inline_bytes = 0
        for part in parts:
            if not isinstance(part, Mapping):
                raise invalid_argument("Invalid Part: expected a JSON object.")
            if "text" in part:
                text = part["text"]
                if not isinstance(text, str):
                    raise invalid_argument("Invalid Part.text: expected a string.")
                inline_bytes += len(text.encode("utf-8", "surrogatepass"))
                out.append(_Part("text", text=text))
                continue
            blob = pick(part, "inline_data", "inlineData")
            ref = pick(part, "file_data", "fileData")
            if isinstance(blob, Mapping):
                mime = pick(blob, "mime_type", "mimeType")
                encoded = pick(blob, "data")
                if not isinstance(encoded, str) or not mime:
                    raise invalid_argument("Invalid inline_data: mime_type and data are required.")
                inline_bytes += len(encoded)
                data = _b64decode(encoded)
            elif isinstance(ref, Mapping):
                uri = pick(ref, "file_uri", "fileUri")
                if not isinstance(uri, str) or not uri:
                    raise invalid_argument("Invalid file_data: file_uri is required.")
                data, file_mime = self._resolve(uri)
                mime = pick(ref, "mime_type", "mimeType") or file_mime
            else:
                raise invalid_argument(
                    "Invalid Part: one of text, inline_data or file_data is required."
                )
            modality = modality_of(str(mime))
            if modality is None:
                raise invalid_argument(f"Unsupported MIME type: {mime}")
            if modality not in limits.modalities:
                raise invalid_argument(
                    f"Model models/{limits.model} does not support {modality} input "
                    f"(supported: {', '.join(limits.modalities)})."
                )
            out.append(_Part(modality, mime_type=str(mime).split(";")[0].strip().lower(), data=data))
        return out, inline_bytes


def _b64decode(encoded: str) -> bytes:
    """Proto-JSON bytes: standard or URL-safe base64, padding optional."""
    cleaned = encoded.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Invalid inline_data.data: not valid base64.") from None
