"""The text bound, checked against the README's number, never against the code's own.

README "Text chunking": a request text, prompt prefix included, of at most 7,782 UTF-8
bytes (8,192 tokens x (1 - 0.05)) is within Embedding 2's 8,192-token limit whatever the
script, because Gemma-family tokenizers never produce more tokens than bytes. The
numbers below are written out here on purpose: a chunker whose budget drifted (doubled,
reserve ignored, prefix forgotten) must fail these tests even though it agrees with
itself. The emulator's own token count (``pipeline/emulator/tokenizer.py``, not the
pipeline's estimator) is the second, independent judge.
"""
from __future__ import annotations

import glob
import json

import pytest
from google import genai
from google.genai import errors, types
from hypothesis import given, settings as hsettings, strategies as st

from conftest import EMULATOR_KEY, REPO
from pipeline.cli import main
from pipeline.emulator.tokenizer import count_tokens
from transforms.chunk_text import chunk_text
from transforms.settings import ChunkSettings
from transforms.tokens import estimate_text_tokens
from transforms.types import SourceObject

DOCUMENTED_BYTES = 7_782
TOKEN_LIMIT = 8_192

# Each script alone, long enough for many chunks: word-separated letters (1 and 2 bytes),
# CJK without any separator (3 bytes), digits (one token per byte), 4-byte emoji.
SCRIPTS = {
    "english": "glaciers carve valleys as the ice slowly flows downhill " * 1500,
    "cyrillic": "ледники медленно текут вниз по долине " * 1500,
    "cjk": "氷河は谷をゆっくりと流れ下る東京日本語" * 2500,
    "digits": "3141592653 5897932384 " * 2500,
    "emoji": "😀👩‍💻🚀🌋" * 2500,
}


def _source(name: str) -> SourceObject:
    return SourceObject(uri=f"/corpus/{name}.txt", size_bytes=1, generation="1-1", detected_type="text")


def _request_texts(limits, name: str, text: str, **settings) -> list[str]:
    chunk_settings = ChunkSettings(limits=limits, **settings)
    return [c.parts[0]["text"] for c in chunk_text(_source(name), text.encode(), chunk_settings)]


def test_the_constants_here_are_the_readme_s():
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "(7,782 for Embedding 2) is within the 8,192-token limit" in readme


@pytest.mark.parametrize("overlap", [0, 200])
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_request_text_is_within_the_documented_bytes(limits, name, overlap):
    # a huge character target, so that only the byte budget can bind
    texts = _request_texts(limits, name, SCRIPTS[name], text_target_chars=200_000,
                           text_overlap_chars=overlap)
    sizes = [len(t.encode("utf-8")) for t in texts]
    assert len(texts) >= 4
    assert max(sizes) <= DOCUMENTED_BYTES, f"{name}: a request text of {max(sizes)} bytes"
    assert max(sizes) > DOCUMENTED_BYTES - 64, "the budget must be what binds, or this proves nothing"
    assert all(t.startswith(f"title: {name} | text: ") for t in texts)  # the prefix counts too
    assert max(count_tokens(t) for t in texts) <= TOKEN_LIMIT


@hsettings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789 \n東京日本語😀👩‍💻𠀋ßaé.")), max_size=30_000))
def test_any_text_with_production_limits(limits, text):
    for request_text in _request_texts(limits, "doc", text, text_target_chars=100_000,
                                       text_overlap_chars=100):
        assert len(request_text.encode("utf-8")) <= DOCUMENTED_BYTES


@hsettings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.one_of(
    st.characters(codec="utf-8", exclude_characters="\x00"),
    st.sampled_from(list("0123456789 \n\t\u00a0東京日本語한국😀👩‍💻𠀋ß_é²")),
), max_size=400))
def test_the_emulator_counts_tokens_on_its_own_and_agrees_with_the_plan(text):
    """Two implementations of the documented costs: the pipeline plans with one, the
    emulator bills and limits with the other, so a plan is exact against the emulator
    and a bug in either shows here. Neither exceeds the UTF-8 byte count."""
    assert count_tokens(text) == estimate_text_tokens(text)
    assert count_tokens(text) <= len(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("text, tokens", [
    ("hello", 2),  # a letter run: one token per 4 UTF-8 bytes, rounded up
    ("héllo", 2),  # 6 bytes
    ("hello world", 4),  # a lone space merges into the next word
    ("a" + " " * 5 + "b", 4),  # a longer whitespace run: 5 bytes, 2 tokens
    ("a\n\nb", 3),
    ("12345", 5),  # a digit is a token
    ("東京", 2),  # so is a CJK character
    ("😀", 2),  # a 4-byte character costs two
    ("_-.", 3),  # any other character one
    ("", 0),
])
def test_both_token_counts_follow_the_documented_costs(text, tokens):
    assert count_tokens(text) == estimate_text_tokens(text) == tokens


def test_the_emulator_refuses_one_token_over_the_limit(server):
    client = genai.Client(api_key=EMULATOR_KEY,
                          http_options=types.HttpOptions(base_url=server.base_url, api_version="v1beta"))
    at_limit = " ".join("7" * TOKEN_LIMIT)  # a digit is a token; single spaces are free
    assert client.models.embed_content(model="gemini-embedding-2", contents=at_limit).embeddings
    with pytest.raises(errors.ClientError) as exc:
        client.models.embed_content(model="gemini-embedding-2", contents=at_limit + " 7")
    assert exc.value.code == 400 and f"({TOKEN_LIMIT + 1})" in exc.value.message


@pytest.mark.slow
def test_request_files_of_a_real_plan_hold_the_documented_bound(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in SCRIPTS.items():
        (corpus / f"{name}.txt").write_text(text)
    out = tmp_path / "out"
    assert main(["plan", "--config", str(REPO / "configs" / "local.yaml"), "--sources", str(corpus),
                 "--output", str(out), "--set", "text.target_chars=200000"]) == 0
    sizes = {}
    for path in glob.glob(str(out / "runs" / "*" / "requests" / "*.jsonl")):
        for line in open(path, encoding="utf-8"):
            (part,) = json.loads(line)["request"]["content"]["parts"]
            sizes[part["text"][:40]] = len(part["text"].encode("utf-8"))
    assert len(sizes) >= 20
    assert max(sizes.values()) <= DOCUMENTED_BYTES
