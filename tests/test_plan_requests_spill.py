"""PlanRequests spills request lines to files and shuffles only small refs: the files it
writes equal the in-memory reference (sort by key, pack, write), concurrent pipelines on
the same run never disturb each other, and nothing of the spill is left behind."""
from __future__ import annotations

import base64
import multiprocessing
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.plan_requests import (
    PlanRequests,
    RequestSizing,
    bucket_count,
    bucket_of,
    pack_lines,
    plan_line,
    write_request_file,
)
from transforms.types import Chunk, Locator

SIZING = RequestSizing("gemini-embedding-2", 768, max_file_bytes=40_000, max_lines=9,
                       max_tokens=2_000)


def _chunks(n: int) -> list[Chunk]:
    out = []
    for i in range(n):
        if i % 7 == 0:  # a media line far longer than the text ones
            part = {"inline_data": {"mime_type": "image/png",
                                    "data": base64.b64encode(bytes([i % 251]) * 6_000).decode()}}
        else:
            part = {"text": f"title: d{i} | text: " + "word " * (i % 40 + 1)}
        out.append(Chunk(chunk_id=f"{(i * 2654435761) % 2**128:032x}", source_uri=f"/c/{i}",
                         source_generation="1", modality="image" if i % 7 == 0 else "text",
                         mime_type="text/plain", locator=Locator("chars", 0.0, float(i)),
                         parts=(part,), est_tokens=i % 90 + 1))
    return out


def _run(chunks: list[Chunk], requests: str) -> None:
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        _ = p | beam.Create(chunks) | PlanRequests(requests, SIZING)


def _reference(chunks: list[Chunk], requests: str) -> None:
    """The same files computed in memory: every line of a bucket sorted, then packed."""
    planned = [plan_line(c, SIZING) for c in chunks]
    totals = (len(planned), sum(len(p.line) for p in planned), sum(p.est_tokens for p in planned))
    n = bucket_count(totals, SIZING)
    for bucket in range(n):
        mine = [p for p in planned if bucket_of(p.chunk_id, n) == bucket]
        for sub, group in enumerate(pack_lines(mine, SIZING)):
            write_request_file(group, requests, f"req-{bucket:05d}-{sub:03d}")


def _contents(folder: str) -> dict[str, bytes]:
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


def test_spilled_plan_equals_the_in_memory_reference_and_leaves_no_spill(tmp_path):
    chunks = _chunks(300)
    _run(chunks, str(tmp_path / "run" / "requests"))
    _reference(chunks, str(tmp_path / "ref"))
    got, want = _contents(str(tmp_path / "run" / "requests")), _contents(str(tmp_path / "ref"))
    assert len(want) > 20 and got == want
    assert os.listdir(tmp_path / "run") == ["requests"]  # the spill folder is gone


def _plan_in_process(requests: str, n: int, go) -> None:
    go.wait()
    _run(_chunks(n), requests)


@pytest.mark.slow
def test_pipelines_planning_the_same_run_at_once_all_succeed(tmp_path):
    """Two ``submit`` processes may prepare one run together (the run slot makes them
    share it): each spills to its own folder, so neither deletes the other's lines."""
    n = 1500
    requests = str(tmp_path / "run" / "requests")
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_plan_in_process, args=(requests, n, go)) for _ in range(3)]
    for proc in procs:
        proc.start()
    go.set()
    for proc in procs:
        proc.join(300)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    _reference(_chunks(n), str(tmp_path / "ref"))
    assert _contents(requests) == _contents(str(tmp_path / "ref"))
    assert os.listdir(tmp_path / "run") == ["requests"]


def test_spill_on_a_remote_filesystem_gives_the_same_files(tmp_path):
    """gs://-like storage (no directories, no local paths): the spill is read back in file
    order into a local temp file, then in key order; the request files are the same."""
    from test_index_remote import ROOT  # registers the fakegcs:// Beam FileSystem

    ROOT["dir"] = str(tmp_path / "gcs")
    try:
        chunks = _chunks(200)
        _run(chunks, "fakegcs://bucket/run/requests")
        _reference(chunks, str(tmp_path / "ref"))
        run = tmp_path / "gcs" / "bucket" / "run"
        assert _contents(str(run / "requests")) == _contents(str(tmp_path / "ref"))
        assert not [f for spill in run.glob(".plan-spill-*") for f in spill.iterdir()]
    finally:
        ROOT["dir"] = None
