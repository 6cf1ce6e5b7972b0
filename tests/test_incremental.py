"""Incremental reruns carry the previous run's dead letters of unchanged objects.

README "Incremental reruns": unchanged objects are not re-chunked or resubmitted; "their
rows (and their dead letters) are copied into the new run", so each run directory is
complete on its own. A rerun that dropped them would silently forget that a chunk of an
unchanged object never got a vector.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.emulator import FaultConfig
from run_helpers import (
    all_embeddings,
    cli_env,
    deadletters,
    embedpipe,
    gemini_args,
    only_run,
    read_json,
    request_files,
    run_args,
    run_dirs,
    standalone_emulator,
)

pytestmark = pytest.mark.slow


def _sorted(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def test_a_rerun_carries_the_dead_letters_of_unchanged_objects(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"note-{i}.txt").write_text(f"Note {i}: lighthouses guide ships past reef number {i}.\n")
    rows = [{"id": "r1", "title": "Kettle", "text": "A copper kettle for the stove."},
            {"title": "no id", "text": "This row has no id and is refused."}]
    (corpus / "products.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02" * 300)

    plan_out = tmp_path / "plan"
    assert main(list(run_args("plan", corpus, plan_out))) == 0  # in-process: only the ids are needed
    keys = {k["chunk_id"]: k["source_uri"] for f in request_files(only_run(plan_out))
            for k in pq.read_table(f["keys_path"]).to_pylist()}
    doomed = min(k for k, uri in keys.items() if uri.endswith(".txt"))  # a note, not the record
    doomed_uri = keys[doomed]

    out = tmp_path / "out"
    tolerant = ("--set", "deadletter_tolerance=0.9")  # both runs complete and become current
    faults = FaultConfig(line_error_codes={doomed: 3})  # permanent: one try, then a dead letter
    with standalone_emulator(tmp_path / "emulator", faults=faults) as (server, url, key):
        env = cli_env(api_key=key)
        first = embedpipe(*run_args("run", corpus, out, *gemini_args(url), *tolerant), env=env)
        assert first.returncode == 0, first.explain()
        first_run = only_run(out)
        jobs_after_first = len(server.stats()["jobs"])
        second = embedpipe(*run_args("run", corpus, out, *gemini_args(url), *tolerant), env=env)
        assert second.returncode == 0, second.explain()
        assert len(server.stats()["jobs"]) == jobs_after_first  # nothing changed: nothing paid

    (second_run,) = [d for d in run_dirs(out) if d != first_run]
    def where(rows: list[dict]) -> list[tuple]:
        return sorted((Path(d["source_uri"].split("#")[0]).name, d["stage"]) for d in rows)

    before = deadletters(first_run)
    assert where(before) == sorted([("binary.txt", "chunk"), ("products.jsonl", "chunk"),
                                    (Path(doomed_uri.split("#")[0]).name, "collect")])
    assert [d["error_class"] for d in before if d.get("chunk_id") == doomed] == ["api_error_3"]

    carried = deadletters(second_run, "carried*.jsonl")
    # the dead letters of the two unchanged objects, exactly as the first run wrote them
    expected = [d for d in before if not d["source_uri"].endswith("binary.txt")]
    assert len(expected) == 2 and _sorted(carried) == _sorted(expected)
    # the dead object is not "unchanged": it is chunked (and refused) again, for free
    assert where(deadletters(second_run, "chunk*.jsonl")) == [("binary.txt", "chunk")]
    assert not deadletters(second_run, "collect*.jsonl")

    manifest = read_json(second_run / "manifest.json")
    assert manifest["previous_run"] == first_run.name
    assert manifest["counts"]["carried_dead_chunks"] == 2
    assert manifest["tokens"]["billed"] == 0
    # every row is carried, the records file's "<file>#<id>" rows included
    ids = all_embeddings(second_run).column("chunk_id").to_pylist()
    assert sorted(ids) == sorted(all_embeddings(first_run).column("chunk_id").to_pylist())
    assert any("#r1" in u for u in all_embeddings(second_run).column("source_uri").to_pylist())
    assert doomed not in ids
