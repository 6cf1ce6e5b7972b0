"""Request files: canonical lines, bounded files, byte-identical on rerun, key lists."""
from __future__ import annotations

import io
import json

import pyarrow.parquet as pq

from transforms.plan_requests import (
    RequestSizing,
    bucket_count,
    pack_lines,
    plan_line,
    request_line,
    write_request_file,
)
from transforms.types import Chunk, Locator


def _chunk(i: int, text: str = "hello") -> Chunk:
    return Chunk(
        chunk_id=f"{i:032x}", source_uri=f"/c/{i}.txt", source_generation="1", modality="text",
        mime_type="text/plain", locator=Locator("chars", 0.0, float(len(text))),
        parts=({"text": f"title: t | text: {text}"},), est_tokens=len(text),
    )


SIZING = RequestSizing("gemini-embedding-2", 768, max_file_bytes=2_000, max_lines=7, max_tokens=60)


def test_request_line_is_the_batch_api_embed_shape():
    line = json.loads(request_line(_chunk(1), "gemini-embedding-2", 768))
    assert line == {
        "key": f"{1:032x}",
        "request": {
            "model": "models/gemini-embedding-2",
            "content": {"parts": [{"text": "title: t | text: hello"}]},
            "outputDimensionality": 768,
        },
    }


def test_packing_respects_every_bound_and_keeps_all_lines():
    planned = [plan_line(_chunk(i, "x" * (i % 13 + 1)), SIZING) for i in range(50)]
    files = pack_lines(reversed(planned), SIZING)
    assert sorted(p.chunk_id for f in files for p in f) == sorted(p.chunk_id for p in planned)
    for f in files:
        assert len(f) <= SIZING.max_lines
        assert sum(len(p.line) for p in f) <= SIZING.max_file_bytes
        assert sum(p.est_tokens for p in f) <= SIZING.max_tokens
        assert [p.chunk_id for p in f] == sorted(p.chunk_id for p in f)


def test_bucket_count_leaves_headroom():
    assert bucket_count((0, 0, 0), SIZING) == 1
    assert bucket_count((70, 100, 10), SIZING) == 70 // 3 + 1


def test_written_files_are_byte_identical_and_carry_keys(tmp_path):
    planned = [plan_line(_chunk(i), SIZING) for i in range(5)]
    a = write_request_file(planned, str(tmp_path / "a"), "req-00000-000")
    b = write_request_file(list(reversed(sorted(planned, key=lambda p: p.chunk_id)))[::-1],
                           str(tmp_path / "b"), "req-00000-000")
    assert open(a.path, "rb").read() == open(b.path, "rb").read()
    keys = pq.read_table(io.BytesIO(open(a.keys_path, "rb").read()))
    assert keys.column("chunk_id").to_pylist() == [p.chunk_id for p in planned]
    assert a.lines == 5 and a.est_tokens == 25 and dict(a.tokens_by_modality) == {"text": 25}
