"""What identifies a chunk and a vector space (README "chunk_id", "Incremental reruns").

``chunk_id`` = sha256 of (source uri, generation, modality, locator, chunker version):
two files with the same bytes are two sources and must get different ids (one would
otherwise overwrite or skip the other); the same input always gets the same id.
The config fingerprint (model, dimensionality, task, chunker settings) decides whether a
rerun may reuse last run's vectors: any of those changing must change it, and nothing
else may (a new quota or poll interval must not re-embed a corpus).
"""
from __future__ import annotations

import shutil

import pytest

import media_factory as mf
from conftest import CONFIGS
from pipeline.config import load_settings
from transforms.chunk import chunk_source
from transforms.list_sources import describe, expand_local
from transforms.types import Locator, SourceObject, make_chunk_id

LOCAL = str(CONFIGS / "local.yaml")
BASE = dict(uri="/corpus/a.txt", generation="1700000000000000000-42", modality="text",
            locator=Locator("chars", 0.0, 100.0), chunker_version="1-abc")


@pytest.mark.parametrize("field, other", [
    ("uri", "/corpus/b.txt"),
    ("uri", "gs://bucket/corpus/a.txt"),
    ("generation", "1700000000000000001-42"),
    ("modality", "pdf"),
    ("locator", Locator("chars", 0.0, 101.0)),
    ("locator", Locator("pages", 0.0, 100.0)),
    ("chunker_version", "1-abd"),
])
def test_every_part_of_the_identity_changes_the_chunk_id(field, other):
    assert make_chunk_id(**BASE) == make_chunk_id(**BASE)
    assert make_chunk_id(**{**BASE, field: other}) != make_chunk_id(**BASE)


def test_the_chunk_id_of_a_known_input_never_changes():
    """Pinned: a change to how ids are made would silently make every existing run's rows
    unmatched, so the next incremental run would pay to re-embed the whole corpus."""
    assert make_chunk_id(**BASE) == "ad9fecf84c5fbf3cea80d682c5ebd82b"


def _chunk_ids(path, chunk_settings, generation: str) -> list[str]:
    source = describe(next(expand_local(str(path))))
    source = SourceObject(source.uri, source.size_bytes, generation, source.detected_type, source.mime_type)
    chunks, errors = chunk_source(source, chunk_settings)
    assert chunks and not errors
    return [c.chunk_id for c in chunks]


@pytest.mark.parametrize("make", ["text", "pdf", "image"])
def test_identical_files_at_two_uris_get_disjoint_ids(tmp_path, chunk_settings, make):
    first = tmp_path / "one" / f"doc.{make}"
    first.parent.mkdir()
    if make == "text":
        first.write_text("Salt marshes buffer storm surges. " * 200)
    elif make == "pdf":
        mf.text_pdf(first, pages=8)
    else:
        mf.save_image(first, mf.gradient(), "PNG")
    second = tmp_path / "two" / first.name
    second.parent.mkdir()
    shutil.copyfile(first, second)
    generation = "1700000000000000000-1"  # the same generation too: only the URI differs
    a = _chunk_ids(first, chunk_settings, generation)
    b = _chunk_ids(second, chunk_settings, generation)
    assert a == _chunk_ids(first, chunk_settings, generation)  # stable
    assert len(a) == len(b) and not set(a) & set(b)


@pytest.mark.parametrize("override", [
    "model=gemini-embedding-001",
    "task=RETRIEVAL_QUERY",
    "task=CLUSTERING",
    "dimensionality=1536",
    "text.target_chars=1999",
    "text.overlap_chars=100",
    "text.title_from_filename=false",
    "media.image_max_side=1024",
    "media.video_keep_audio=false",
])
def test_what_changes_the_vectors_changes_the_fingerprint(tmp_path, override):
    base = load_settings(LOCAL, output=str(tmp_path)).fingerprint()
    assert load_settings(LOCAL, output=str(tmp_path), overrides=[override]).fingerprint() != base


@pytest.mark.parametrize("override", [
    "quota.enqueued_tokens=5000000",
    "quota.max_concurrent_jobs=7",
    "max_attempts=5",
    "deadletter_tolerance=0.5",
    "gemini.poll_interval_s=1",
    "backend=gemini",
    "gemini.base_url=http://127.0.0.1:9",
    "requests.max_lines_per_file=10",
    "index.nlist=8",
    "media.ffmpeg_timeout_seconds=30",
    "media.ffmpeg_path=/usr/local/bin/ffmpeg",
])
def test_what_does_not_change_the_vectors_keeps_the_fingerprint(tmp_path, override):
    base = load_settings(LOCAL, output=str(tmp_path)).fingerprint()
    assert load_settings(LOCAL, output=str(tmp_path / "elsewhere"), overrides=[override]).fingerprint() == base
