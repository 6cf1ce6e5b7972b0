"""Emulator vectors, featurisers, token estimator, and the limits loader."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google import genai
from google.genai import types
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance

from pipeline.emulator import EmulatorServer
from pipeline.emulator.embedder import Embedder
from pipeline.emulator.errors import ApiError
from transforms.tokens import estimate_text_tokens
from pipeline.emulator.vectors import DIM, featurise_audio, featurise_video, strip_prompt_prefix, text_vector
from transforms.limits import DEFAULT_CONFIG_DIR, load_limits_dir, load_tokens_per_unit

LIMITS = load_limits_dir(DEFAULT_CONFIG_DIR / "limits")
RATES = load_tokens_per_unit(DEFAULT_CONFIG_DIR / "pricing.yaml")


def _no_files(uri: str):
    raise ApiError(400, f"unknown file {uri}")


EMBEDDER = Embedder(LIMITS, RATES, _no_files)


def embed(text: str, dims: int | None = None, model: str = "gemini-embedding-2") -> np.ndarray:
    request = {"content": {"parts": [{"text": text}]}}
    if dims:
        request["outputDimensionality"] = dims
    return EMBEDDER.embed(model, request).values


def embed_image(data: bytes, mime: str = "image/png") -> np.ndarray:
    import base64

    part = {"inline_data": {"mime_type": mime, "data": base64.b64encode(data).decode()}}
    return EMBEDDER.embed("gemini-embedding-2", {"content": {"parts": [part]}}).values


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# -- text vectors --------------------------------------------------------------------------
def test_deterministic_across_processes_and_hash_seeds():
    code = ("from pipeline.emulator.vectors import text_vector, DIM; import numpy as np; "
            "print(repr(float(np.round(text_vector('stable hashing across runs') @ np.arange(DIM), 6))))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # differs from this process's random seed
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    here = float(np.round(text_vector("stable hashing across runs") @ np.arange(DIM), 6))
    assert float(out.stdout) == here
    np.testing.assert_array_equal(embed("same text"), embed("same text"))


def test_prefix_truncation_and_normalisation_only_at_3072():
    full = embed("Matryoshka embeddings nest coarse information first.")
    assert full.shape == (3072,) and abs(np.linalg.norm(full) - 1) < 1e-6
    for dims in (128, 768, 1536):
        short = embed("Matryoshka embeddings nest coarse information first.", dims)
        assert short.shape == (dims,)
        np.testing.assert_array_equal(short, full[:dims])
        assert np.linalg.norm(short) < 0.999  # not renormalised, as the real service documents
        assert np.linalg.norm(short) > 0  # every band carries every feature: never all zeros
    assert np.linalg.norm(embed("x", 128)) > 0


def test_similar_texts_are_closer_than_unrelated_ones():
    a = embed("The cat sat on the mat.")
    b = embed("A cat was sitting on the mat.")
    c = embed("Quarterly revenue grew by ten percent.")
    assert cos(a, b) > 0.4 > cos(a, c) + 0.3
    for dims in (128, 768):  # the Matryoshka prefixes keep the ordering
        assert cos(a[:dims], b[:dims]) > cos(a[:dims], c[:dims])


DOCS = {
    "photosynthesis": "title: Photosynthesis | text: Green plants use sunlight, water and carbon dioxide to make sugar.",
    "markets": "title: Markets | text: The stock market fell sharply as investors feared rising interest rates.",
    "football": "title: Sport | text: The football team won the championship after a penalty shootout.",
    "cells": "title: Biology | text: Mitochondria are the powerhouse of the cell and produce energy.",
}


@pytest.mark.parametrize("query,expected", [
    ("task: search result | query: photosynthesis in plants", "photosynthesis"),
    ("task: question answering | query: who won the football championship?", "football"),
    ("task: search result | query: why did stocks fall", "markets"),
])
def test_query_prefix_finds_its_document(query, expected):
    q = embed(query, 768)
    scores = {name: cos(q, embed(doc, 768)) for name, doc in DOCS.items()}
    assert max(scores, key=scores.get) == expected


def test_prompt_prefix_stripping_keeps_title_and_text():
    assert strip_prompt_prefix("task: search result | query: photosynthesis") == "photosynthesis"
    assert strip_prompt_prefix("title: Plants | text: Leaves are green") == "Plants\nLeaves are green"
    assert strip_prompt_prefix("title: none | text: body") == "body"
    assert strip_prompt_prefix("no prefix | here") == "no prefix | here"
    assert cos(embed("task: search result | query: photosynthesis"), embed("photosynthesis")) > 0.999


def test_query_finds_document_through_the_sdk():
    with EmulatorServer() as srv:
        client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=srv.base_url, api_version="v1beta"))
        docs = [types.Content(parts=[types.Part(text=d)]) for d in DOCS.values()]
        d = np.array([e.values for e in client.models.embed_content(model="gemini-embedding-2", contents=docs).embeddings])
        q = client.models.embed_content(model="gemini-embedding-2",
                                        contents=["task: search result | query: photosynthesis in plants"])
        assert list(DOCS)[int(np.argmax(d @ np.array(q.embeddings[0].values)))] == "photosynthesis"


def test_empty_text_is_rejected_but_symbols_are_not():
    with pytest.raises(ApiError):
        embed("   ")
    assert np.linalg.norm(embed("!!!")) > 0.99


# -- images, PDFs, audio/video ---------------------------------------------------------------
def _gradient(seed: int, size=(96, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (4, 4, 3)).astype(np.uint8)
    return Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def test_identical_images_give_identical_vectors_and_similar_ones_are_near():
    img = _gradient(1)
    a = embed_image(_png(img))
    np.testing.assert_array_equal(a, embed_image(_png(img)))
    similar = embed_image(_jpeg(ImageEnhance.Brightness(img.resize((120, 80))).enhance(1.1)), "image/jpeg")
    others = [embed_image(_png(_gradient(seed))) for seed in range(2, 7)]
    assert cos(a, similar) > 0.9
    assert cos(a, similar) > max(cos(a, o) for o in others)


def test_images_must_be_png_or_jpeg_and_decodable():
    with pytest.raises(ApiError) as exc:
        embed_image(_png(_gradient(1)), "image/webp")
    assert exc.value.http_code == 400
    with pytest.raises(ApiError):
        embed_image(b"not an image")


def test_image_and_text_fold_into_one_vector():
    import base64

    img = {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(_png(_gradient(1))).decode()}}
    both = EMBEDDER.embed("gemini-embedding-2", {"content": {"parts": [{"text": "red shoe"}, img]}})
    assert both.values.shape == (3072,)
    assert both.token_count == estimate_text_tokens("red shoe") + 258
    assert cos(both.values, embed("red shoe")) > 0.3 and cos(both.values, embed_image(_png(_gradient(1)))) > 0.3


def test_audio_video_featurisers_decode_and_bill_the_measured_duration(tmp_path):
    import media_factory as mf

    limits = LIMITS["gemini-embedding-2"]
    wav = Path(mf.audio_file(tmp_path / "a.wav", seconds=3, channels=1, sample_rate=16000)).read_bytes()
    a1 = featurise_audio(wav, "audio/wav", limits, RATES)
    a2 = featurise_audio(wav, "audio/wav", limits, RATES)
    np.testing.assert_array_equal(a1.vector, a2.vector)
    assert a1.tokens == 3 * 32  # 3 s of packets at 32 tokens/s
    mp4 = Path(mf.h264_mp4(tmp_path / "v.mp4", seconds=2, audio=False, size="64x36")).read_bytes()
    assert featurise_video(mp4, "video/mp4", limits, RATES).tokens == 2 * 263
    with pytest.raises(ApiError) as exc:  # undecodable bytes are a 400, not a hash
        featurise_audio(b"abc" * 16000, "audio/mpeg", limits, RATES)
    assert exc.value.http_code == 400


# -- token estimator ------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400))
def test_token_estimate_never_exceeds_utf8_bytes(text):
    assert 0 <= estimate_text_tokens(text) <= len(text.encode("utf-8"))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["7", "東", "😀", " ", "\n", "word", "é", "?", "ß"]), max_size=200))
def test_token_estimate_bound_on_adversarial_mixes(pieces):
    text = "".join(pieces)
    assert estimate_text_tokens(text) <= len(text.encode("utf-8"))


def test_token_estimate_behaves_like_bpe():
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("12345") == 5  # digits split singly
    assert estimate_text_tokens("東京都") == 3  # one per CJK character
    assert estimate_text_tokens("hello world") == 4  # ceil(5/4) each, the space merges
    assert estimate_text_tokens("😀") == 2
    assert estimate_text_tokens("internationalization") == 5


# -- limits loader ---------------------------------------------------------------------------
def test_limits_dir_loads_every_model_with_tuples():
    assert set(LIMITS) == {"gemini-embedding-2", "gemini-embedding-001"}
    limits = LIMITS["gemini-embedding-2"]
    assert limits.text_tokens == 8192 and limits.images_per_request == 6 and limits.pdf_pages == 6
    assert limits.image_mime_types == ("image/png", "image/jpeg") and isinstance(limits.video_seconds, float)
    assert LIMITS["gemini-embedding-001"].modalities == ("text",)
    assert RATES == {"image": 258.0, "audio_second": 32.0, "video_second": 263.0, "pdf_page": 258.0}


def test_limits_errors_name_the_file_and_key(tmp_path):
    source = (DEFAULT_CONFIG_DIR / "limits" / "gemini-embedding-2.yaml").read_text()
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "m.yaml").write_text("\n".join(l for l in source.splitlines() if not l.startswith("pdf_pages")))
    with pytest.raises(ValueError, match=r"m\.yaml.*missing key 'pdf_pages'"):
        load_limits_dir(missing)
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "u.yaml").write_text(source + "\nbogus_limit: 3\n")
    with pytest.raises(ValueError, match=r"u\.yaml.*unknown key 'bogus_limit'"):
        load_limits_dir(unknown)
    typed = tmp_path / "typed"
    typed.mkdir()
    (typed / "t.yaml").write_text(source.replace("pdf_pages: 6", "pdf_pages: six"))
    with pytest.raises(ValueError, match=r"t\.yaml.*'pdf_pages'"):
        load_limits_dir(typed)
    with pytest.raises(ValueError, match="does not exist"):
        load_limits_dir(tmp_path / "nowhere")


def test_emulator_enforces_limits_passed_in():
    custom = {name: l for name, l in LIMITS.items()}
    from dataclasses import replace

    custom["gemini-embedding-2"] = replace(custom["gemini-embedding-2"], text_tokens=10)
    small = Embedder(custom, RATES, _no_files)
    request = {"content": {"parts": [{"text": "one two three four five six seven eight nine ten eleven"}]}}
    with pytest.raises(ApiError, match="exceeds the maximum number of tokens allowed"):
        small.embed("gemini-embedding-2", request)
    assert EMBEDDER.embed("gemini-embedding-2", request).token_count > 10
