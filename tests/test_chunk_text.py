"""Text chunking: the token-limit proof holds for any text, bad bytes become errors."""
from __future__ import annotations

import codecs
import dataclasses

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from transforms.chunk_errors import ChunkingError
from transforms.chunk_text import chunk_text, decode_text, plan_chunks
from transforms.types import SourceObject


def _source(name="doc.txt", generation="1-1"):
    return SourceObject(uri=f"/corpus/{name}", size_bytes=1, generation=generation,
                        detected_type="text")


def _request_bytes(chunk):
    return len(chunk.parts[0]["text"].encode("utf-8"))


# Alphabets the research found hardest for byte/token ratios: digits, rare and common
# CJK, emoji, and text with no whitespace at all.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
        st.sampled_from(list("0123456789 \n東京日本語😀👩‍💻𠀋𠀀ß")),
    ),
    min_size=0,  # NUL is excluded: text containing NUL is treated as binary by design
    max_size=3000,
)


@hsettings(max_examples=150, deadline=None)
@given(text=TEXT, target=st.integers(60, 900), overlap=st.integers(0, 50))
def test_every_chunk_is_provably_within_the_token_limit(limits, text, target, overlap):
    from transforms.settings import ChunkSettings

    small = dataclasses.replace(limits, text_tokens=200, token_reserve=0.05)
    settings = ChunkSettings(limits=small, text_target_chars=target, text_overlap_chars=overlap)
    chunks = list(chunk_text(_source(), text.encode("utf-8"), settings))
    for chunk in chunks:
        # tokens <= UTF-8 bytes for Gemma-family tokenizers, so bytes bound tokens
        assert _request_bytes(chunk) <= small.text_byte_budget
        assert chunk.est_tokens <= _request_bytes(chunk)
    # Nothing is lost: the non-whitespace content is fully covered by the chunks.
    covered = set()
    for chunk in chunks:
        covered.update(range(int(chunk.locator.start), int(chunk.locator.end)))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


@hsettings(max_examples=100, deadline=None)
@given(text=TEXT)
def test_without_overlap_chunks_concatenate_to_the_text(text):
    spans = plan_chunks(text, target_chars=300, overlap_chars=0, max_bytes=400)
    assert "".join(text[s:e] for s, e in spans) == text
    assert all(len(text[s:e].encode()) <= 400 for s, e in spans)


def test_a_20000_character_single_line_is_split(chunk_settings):
    line = ("lorem ipsum dolor sit amet " * 800)[:20000]
    chunks = list(chunk_text(_source(), line.encode(), chunk_settings))
    assert len(chunks) >= 10
    assert chunks[0].locator.start == 0 and chunks[-1].locator.end == 20000
    assert all(_request_bytes(c) <= chunk_settings.limits.text_byte_budget for c in chunks)


def test_no_whitespace_cjk_is_cut_within_the_byte_budget(chunk_settings):
    text = "東京都" * 5000  # 45,000 UTF-8 bytes, no separators at all
    chunks = list(chunk_text(_source(), text.encode(), chunk_settings))
    assert all(_request_bytes(c) <= chunk_settings.limits.text_byte_budget for c in chunks)
    assert sum(c.locator.end - c.locator.start for c in chunks) >= len(text)


def test_paragraph_boundaries_are_preferred(chunk_settings):
    paragraphs = [f"Paragraph {i} " + "word " * 150 for i in range(6)]
    chunks = list(chunk_text(_source(), "\n\n".join(paragraphs).encode(), chunk_settings))
    for chunk in chunks[:-1]:
        body = chunk.parts[0]["text"].split(" | text: ", 1)[1]
        assert body.endswith("\n\n"), "chunks should end on a paragraph break"


def test_document_prompt_prefix_carries_the_title(chunk_settings):
    chunk = next(chunk_text(_source("black_holes.txt"), b"Event horizons.", chunk_settings))
    assert chunk.parts[0]["text"] == "title: black holes | text: Event horizons."
    assert chunk.locator.unit == "chars"


def test_utf16_with_bom_is_decoded(chunk_settings):
    data = codecs.BOM_UTF16_LE + "Grüße aus Köln".encode("utf-16-le")
    chunk = next(chunk_text(_source(), data, chunk_settings))
    assert chunk.parts[0]["text"].endswith("Grüße aus Köln")


def test_utf8_bom_is_stripped():
    assert decode_text(codecs.BOM_UTF8 + b"hello") == "hello"


def test_binary_content_named_txt_is_refused(chunk_settings):
    png_like = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    with pytest.raises(ChunkingError) as err:
        list(chunk_text(_source(), png_like, chunk_settings))
    assert err.value.error_class == "binary_content"


def test_undecodable_bytes_name_the_offset(chunk_settings):
    with pytest.raises(ChunkingError) as err:
        list(chunk_text(_source(), "café".encode("latin-1") + b" ok", chunk_settings))
    assert err.value.error_class == "undecodable_text"
    assert "offset 3" in err.value.message


def test_empty_and_whitespace_files_give_no_chunks(chunk_settings):
    assert list(chunk_text(_source(), b"", chunk_settings)) == []
    assert list(chunk_text(_source(), b" \n\t\n", chunk_settings)) == []


def test_chunk_ids_are_stable_and_depend_on_generation(chunk_settings):
    data = ("alpha beta gamma. " * 400).encode()
    first = [c.chunk_id for c in chunk_text(_source(), data, chunk_settings)]
    again = [c.chunk_id for c in chunk_text(_source(), data, chunk_settings)]
    changed = [c.chunk_id for c in chunk_text(_source(generation="2-1"), data, chunk_settings)]
    assert first == again
    assert len(set(first)) == len(first)
    assert not set(first) & set(changed)


def test_chunk_ids_change_with_chunker_settings(chunk_settings):
    data = ("alpha beta gamma. " * 400).encode()
    other = dataclasses.replace(chunk_settings, text_target_chars=500)
    a = {c.chunk_id for c in chunk_text(_source(), data, chunk_settings)}
    b = {c.chunk_id for c in chunk_text(_source(), data, other)}
    assert not a & b


def test_the_chunk_stage_counts_every_chunk_and_token_and_clocks_every_object(
    tmp_path, chunk_settings
):
    """The chunk counters and the stage clock, updated once per object, still add up
    to every chunk, every estimated token and every object of a real pipeline run."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.phases import STAGE_NAMESPACE, MarkStage
    from transforms.chunk import ChunkSources

    sources = []
    for i, words in enumerate((3, 900, 2500, 0)):
        path = tmp_path / f"doc{i}.txt"
        path.write_text(" ".join(f"word{j}" for j in range(words)))
        sources.append(SourceObject(uri=str(path), size_bytes=path.stat().st_size,
                                    generation="1-1", detected_type="text"))
    expected = [c for s in sources
                for c in chunk_text(s, open(s.uri, "rb").read(), chunk_settings)]
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    chunked = p | beam.Create(sources) | ChunkSources(chunk_settings)
    _ = chunked.outcomes | beam.ParDo(MarkStage("chunk"))
    result = p.run()
    result.wait_until_finish()

    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace("embedpipe"))["counters"]}
    assert len(expected) > 3
    assert counters["chunks"] == len(expected)
    assert counters["chunk_est_tokens"] == sum(c.est_tokens for c in expected)
    (clock,) = result.metrics().query(MetricsFilter().with_namespace(STAGE_NAMESPACE))["distributions"]
    assert clock.key.metric.name == "chunk_out_ms"
    assert clock.committed.count == len(sources)
