"""Exactly-once writes on local disk and on GCS (fake-gcs-server): create-only objects, a
sink whose retried writes are no-ops, deletes and read-modify-writes without the GCS batch
API, and the emulator credential set-up that spares every process Beam's auth stall."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import apache_beam as beam
import pytest

from gcs_emulator import gcs_bucket, gcs_emulator  # noqa: F401 (pytest fixtures)
from transforms import fs
from transforms.write_once import (
    RECORDS_PER_PACK,
    RecordPack,
    WriteOnceJsonLines,
    WriteShardDoFn,
    shard_bytes,
    shard_glob,
    shard_of,
    shard_path,
)

LINES = [json.dumps({"uri": f"gs://b/doc-{i:03d}.txt", "status": "chunked", "chunks": i % 4}) for i in range(120)]


@pytest.fixture(params=["local", "gcs"])
def where(request, tmp_path):
    """A writable prefix: a temp folder, or a fresh bucket on fake-gcs-server."""
    if request.param == "local":
        return str(tmp_path / "out")
    return f"gs://{request.getfixturevalue('gcs_bucket')}/out"


def _generation(uri: str):
    if not fs.is_gcs(uri):
        return os.stat(uri).st_mtime_ns
    blob = fs.gcs_blob(uri)
    blob.reload()
    return blob.generation


def test_write_once_is_a_no_op_for_identical_bytes_and_refuses_others(where):
    uri = fs.join(where, "listing", "objects-00000-of-00001.jsonl")
    assert fs.write_once(uri, b"a\nb\n") is True
    first = _generation(uri)
    assert fs.write_once(uri, b"a\nb\n") is False  # a retried worker: nothing happens
    assert _generation(uri) == first
    with pytest.raises(fs.ConflictingWrite, match="different content"):
        fs.write_once(uri, b"a\nc\n")
    assert fs.read_bytes(uri) == b"a\nb\n"  # the first version is kept


def test_retried_shard_writer_leaves_the_same_object(where):
    """The sink's DoFn run twice on the same group (a worker retry) writes one object once."""
    fn = WriteShardDoFn(fs.join(where, "deadletters", "chunk"), ".jsonl")
    element = ((0, 1), list(reversed(LINES)))
    (path,) = list(fn.process(element))
    first = _generation(path)
    assert list(fn.process(((0, 1), LINES))) == [path]  # same lines, another order
    assert _generation(path) == first
    assert fs.read_bytes(path) == shard_bytes(LINES)
    assert fs.match(shard_glob(fs.join(where, "deadletters", "chunk"), ".jsonl")) == [(path, len(shard_bytes(LINES)))]


def _run_sink(prefix: str, lines: list[str], per_shard: int) -> None:
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create(lines) | WriteOnceJsonLines(prefix, lines_per_shard=per_shard)


def test_records_with_to_line_write_the_same_shards_as_their_lines(tmp_path):
    """A sink fed compact records and a ``to_line`` writes, byte for byte, the objects the
    same sink writes from the lines themselves (same shard count, same shard of each line)."""
    records = [json.dumps([f"gs://b/doc-{i:03d}.txt", "chunked", i % 4]) for i in range(120)]

    def to_line(record: str) -> str:
        uri, status, chunks = json.loads(record)
        return json.dumps({"uri": uri, "status": status, "chunks": chunks})

    from_lines, from_records = str(tmp_path / "lines" / "objects"), str(tmp_path / "records" / "objects")
    _run_sink(from_lines, [to_line(r) for r in records], per_shard=50)
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create(records) | WriteOnceJsonLines(from_records, lines_per_shard=50, to_line=to_line)

    def shards(prefix):
        return {os.path.basename(path): fs.read_bytes(path) for path, _ in fs.match(shard_glob(prefix, ".jsonl"))}

    assert len(shards(from_lines)) == 3
    assert shards(from_records) == shards(from_lines)


def test_sink_output_is_deterministic_and_a_rerun_writes_nothing_new(where):
    prefix = fs.join(where, "listing", "objects")
    _run_sink(prefix, LINES, per_shard=50)
    shards = fs.match(shard_glob(prefix, ".jsonl"))
    assert [os.path.basename(p) for p, _ in shards] == [f"objects-{i:05d}-of-00003.jsonl" for i in range(3)]
    written = [line for p, _ in shards for line in fs.read_bytes(p).decode().splitlines()]
    assert sorted(written) == sorted(LINES)  # every line exactly once over the shards
    generations = {p: _generation(p) for p, _ in shards}

    shuffled = LINES[:]
    random.Random(7).shuffle(shuffled)
    _run_sink(prefix, shuffled, per_shard=50)  # the same input again, bundled differently
    assert {p: _generation(p) for p, _ in fs.match(shard_glob(prefix, ".jsonl"))} == generations


def test_a_record_pack_gives_back_its_records_exactly():
    records = ["", "plain", '{"uri": "caf\u00e9 \u2028 \\"q\\"", "n": 1}', "\u00e9\U0001f600", "tab\there", "cr\rhere"]
    pack = RecordPack.of(records)
    assert pack.count == len(records)
    assert pack.records() == records
    assert RecordPack.of([""]).records() == [""]


def test_a_sink_fed_many_packs_writes_each_line_once_in_its_shard(tmp_path):
    """Lines cross the sink in packs of RECORDS_PER_PACK, each regrouped by shard: with
    several packs per shard and several shards per pack, every shard holds exactly its
    lines, sorted, as a sink taking one line at a time would write it."""
    lines = [json.dumps({"uri": f"/c/d{i:05d}.txt", "note": "\u00e9" * (i % 3)}, ensure_ascii=False)
             for i in range(2 * RECORDS_PER_PACK + 345)]
    prefix = str(tmp_path / "listing" / "objects")
    _run_sink(prefix, lines, per_shard=400)
    count = -(-len(lines) // 400)
    expected = {}
    for line in lines:
        expected.setdefault(shard_of(line, count), []).append(line)
    written = {path: fs.read_bytes(path) for path, _ in fs.match(shard_glob(prefix, ".jsonl"))}
    assert written == {shard_path(prefix, i, count, ".jsonl"): shard_bytes(group) for i, group in expected.items()}


def test_sink_writes_nothing_for_empty_input(where):
    prefix = fs.join(where, "listing", "tombstones")
    _run_sink(prefix, [], per_shard=50)
    assert fs.match(shard_glob(prefix, ".jsonl")) == []


def test_delete_removes_one_object_and_ignores_missing_ones(where):
    uris = [fs.join(where, "index", f"f{i}.bin") for i in range(3)]
    for uri in uris:
        fs.write_bytes(uri, b"x")
    fs.delete_many(uris[:2] + [fs.join(where, "index", "never-written.bin")])
    assert [fs.exists(u) for u in uris] == [False, False, True]


def test_read_modify_write_loses_no_concurrent_update(where):
    uri = fs.join(where, "run.json")

    def bump(i: int) -> None:
        def change(current: bytes | None) -> bytes:
            state = json.loads(current) if current else {"seen": []}
            state["seen"].append(i)
            return json.dumps(state).encode()

        fs.read_modify_write(uri, change)

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(bump, range(12)))
    assert sorted(json.loads(fs.read_bytes(uri))["seen"]) == list(range(12))


_PROBE = ("import transforms.fs; from apache_beam.internal.gcp import auth; "
          "print(auth._Credentials._credentials_init, auth._Credentials._credentials)")


@pytest.mark.parametrize("emulator, expected", [("http://127.0.0.1:9", "True None"), (None, "False None")])
def test_emulator_credentials_only_when_an_emulator_is_configured(emulator, expected):
    """With STORAGE_EMULATOR_HOST, importing embedpipe's fs makes Beam's GcsIO anonymous
    (no google.auth.default() retries: ~25 s per process otherwise); without it, Beam's
    credential lookup for real GCS is untouched."""
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    if emulator:
        env["STORAGE_EMULATOR_HOST"] = emulator
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected
