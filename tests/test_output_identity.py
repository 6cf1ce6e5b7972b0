"""Pins what the performance work must not change: request files (and their key lists,
and staged media), chunk ids, and the contents of the embeddings Parquet, for fixed
inputs. The digests were computed with the code at main's HEAD before the pipeline's
internals were rewritten for speed and bounded memory; a different digest means a
different request (a new id, a re-priced or re-ordered line) or a different row.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.chunk_text import chunk_text
from transforms.embeddings_schema import EmbeddingsMeta
from transforms.plan_requests import PlanRequests, RequestSizing
from transforms.types import Chunk, Locator, SourceObject
from transforms.write_embeddings import ResultSet, WriteEmbeddingsDoFn

REQUESTS_DIGEST = "a054eb2a2e1bde266b3bf4467023d4761ff8cb81de295c696d2c13762bb4d412"
CHUNK_IDS_DIGEST = "a0809eb27d089a41046f53004bb498e503c35609d415ff382c56d70dfd8a06e1"
EMBEDDINGS_DIGEST = "d9d8a37f3a5dfe512e68d86cdbc9e448d2f8270c55a01764e5e29691739836f6"

CREATED_AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
WORDS = "alpha beta γάμμα δέλτα 東京 日本語 emoji😀 naïve café ß 12345 end.".split()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _text_chunk(i: int, rng: np.random.Generator) -> Chunk:
    text = " ".join(rng.choice(WORDS, int(rng.integers(1, 60))))
    return Chunk(
        chunk_id=_sha(f"chunk-{i}".encode())[:32],
        source_uri=f"/pin/doc-{i % 17}.txt",
        source_generation=f"{1000 + i % 17}-{i % 5}",
        modality="text",
        mime_type="text/plain",
        locator=Locator("chars", float(i * 10), float(i * 10 + len(text))),
        parts=({"text": f"title: doc {i % 17} | text: {text}"},),
        est_tokens=len(text) // 3 + 1,
    )


def _media_chunk(i: int, size: int, modality: str, mime: str) -> Chunk:
    data = bytes((i * 7 + k) % 251 for k in range(size))
    return Chunk(
        chunk_id=_sha(f"media-{i}".encode())[:32],
        source_uri=f"/pin/media-{i}.bin",
        source_generation="7-7",
        modality=modality,
        mime_type=mime,
        locator=Locator("seconds", 0.0, 12.5) if modality != "image" else Locator(),
        parts=({"inline_data": {"mime_type": mime, "data": base64.b64encode(data).decode()}},),
        est_tokens=258,
    )


def pin_chunks() -> list[Chunk]:
    rng = np.random.default_rng(7)
    chunks = [_text_chunk(i, rng) for i in range(120)]
    chunks += [_media_chunk(i, 300 + 40 * i, "image", "image/png") for i in range(4)]
    chunks.append(_media_chunk(9, 6_000, "video", "video/mp4"))  # over the staging threshold
    chunks.append(
        Chunk(
            chunk_id=_sha(b"record")[:32], source_uri="/pin/rows.jsonl#r1",
            source_generation="3-3", modality="records", mime_type="application/json",
            locator=Locator(), task="RETRIEVAL_DOCUMENT", est_tokens=300,
            parts=({"text": "title: r1 | text: a product"},
                   {"inline_data": {"mime_type": "image/jpeg", "data": "AAEC"}},
                   {"file_data": {"mime_type": "video/mp4", "file_uri": "gs://b/v.mp4"}}),
        )
    )
    return chunks


def _table_digest(table: pa.Table) -> str:
    h = hashlib.sha256(table.schema.to_string(show_schema_metadata=True).encode())
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type):
            h.update(column.flatten().to_numpy().astype("<f4").tobytes())
        elif pa.types.is_timestamp(column.type):
            h.update(json.dumps([None if v is None else v.isoformat()
                                 for v in column.to_pylist()]).encode())
        else:
            h.update(json.dumps(column.to_pylist(), ensure_ascii=False).encode())
    return h.hexdigest()


def requests_digest(tmp_path) -> str:
    sizing = RequestSizing(
        "gemini-embedding-2", 768, max_file_bytes=9_000, max_lines=11, max_tokens=900,
        media_dir=str(tmp_path / "media"), files_api_threshold_bytes=4_000,
    )
    requests = str(tmp_path / "requests")
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        _ = p | beam.Create(pin_chunks()) | PlanRequests(requests, sizing)
    h = hashlib.sha256()
    names = sorted(n for n in os.listdir(requests) if n.endswith(".jsonl"))
    assert len(names) > 10  # several buckets, several files per bucket
    for name in names:
        stem = name[: -len(".jsonl")]
        h.update(name.encode())
        h.update(_sha(open(os.path.join(requests, name), "rb").read()).encode())
        keys = pq.read_table(os.path.join(requests, f"{stem}.keys.parquet"))
        h.update(_table_digest(keys).encode())
    for name in sorted(os.listdir(tmp_path / "media")):
        h.update(name.encode() + _sha(open(tmp_path / "media" / name, "rb").read()).encode())
    assert sorted(os.listdir(requests)) == sorted(
        [n for stem in names for n in (stem, stem.replace(".jsonl", ".keys.parquet"))]
    )
    return h.hexdigest()


def test_request_files_are_byte_identical_to_before(tmp_path):
    assert requests_digest(tmp_path) == REQUESTS_DIGEST


def test_chunk_ids_are_unchanged(chunk_settings):
    text = "\n\n".join(" ".join(WORDS * (i + 3)) for i in range(40)).encode()
    source = SourceObject("/pin/doc.txt", len(text), "1700000000000000000-1", "text")
    chunks = list(chunk_text(source, text, chunk_settings))
    assert len(chunks) > 5
    material = [(c.chunk_id, c.locator.as_key(), c.est_tokens, c.parts[0]["text"]) for c in chunks]
    assert _sha(json.dumps(material, ensure_ascii=False).encode()) == CHUNK_IDS_DIGEST


def _result_lines(keys: list[str], d: int, rng: np.random.Generator) -> list[str]:
    lines = []
    for n, key in enumerate(keys):
        values = rng.standard_normal(d).round(6)
        if n % 11 == 3:
            lines.append(json.dumps({"key": key, "error": {"code": 429, "message": "quota"}}))
        elif n % 11 == 5:
            continue  # missing
        elif n % 11 == 7:
            lines.append(json.dumps({"key": key, "response": {"embedding": {"values": [0.0] * d}}}))
        elif n % 11 == 8:
            lines.append(json.dumps({"key": key, "response": {"embedding": {"values": [1.0] * (d - 1)}}}))
        elif n % 11 == 9:
            lines.append(json.dumps({"response": {"embedding": {"values": values.tolist()},
                                                  "usageMetadata": {"promptTokenCount": n}},
                                     "key": key}))
        else:
            lines.append(json.dumps({"key": key, "response": {
                "embedding": {"values": values.tolist()}, "tokenCount": str(n)}}))
    lines.insert(4, "not json at all")
    lines.insert(9, "")
    return lines


def embeddings_digest(tmp_path) -> str:
    d = 24
    rng = np.random.default_rng(11)
    chunks = pin_chunks()[:60]
    keys = pa.table({
        "chunk_id": [c.chunk_id for c in chunks],
        "source_uri": [c.source_uri for c in chunks],
        "source_generation": [c.source_generation for c in chunks],
        "modality": [c.modality for c in chunks],
        "mime_type": [c.mime_type for c in chunks],
        "unit": [c.locator.unit for c in chunks],
        "start": [c.locator.start for c in chunks],
        "end": [c.locator.end for c in chunks],
        "task": [c.task for c in chunks],
        "est_tokens": [c.est_tokens for c in chunks],
        "line_bytes": [100 + i for i in range(len(chunks))],
    })
    keys_path = str(tmp_path / "k.keys.parquet")
    pq.write_table(keys, keys_path)
    ids = [c.chunk_id for c in chunks]
    first = _result_lines(ids, d, rng)
    retry = _result_lines(ids[::-1], d, rng)  # a second attempt: successes never replaced
    for name, lines in (("a.jsonl", first), ("b.jsonl", retry)):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    rs = ResultSet(0, 1, "req-00000-000", keys_path,
                   ((str(tmp_path / "a.jsonl"), "batches/a"), (str(tmp_path / "b.jsonl"), "batches/b")))
    meta = EmbeddingsMeta("gemini-embedding-2", d, True, "pin")
    fn = WriteEmbeddingsDoFn(str(tmp_path / "emb"), meta, CREATED_AT)
    out = list(fn.process(rs))
    letters = sorted(
        json.dumps(o.value.__dict__, sort_keys=True) for o in out if isinstance(o, beam.pvalue.TaggedOutput)
    )
    parts = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    table = pq.read_table(tmp_path / "emb" / parts[0]["part"])
    assert 0 < table.num_rows < len(chunks) and letters
    h = hashlib.sha256(_table_digest(table).encode())
    h.update(json.dumps(parts).encode())
    for letter in letters:
        h.update(letter.encode())
    return h.hexdigest()


def test_embeddings_parquet_contents_are_unchanged(tmp_path):
    assert embeddings_digest(tmp_path) == EMBEDDINGS_DIGEST
