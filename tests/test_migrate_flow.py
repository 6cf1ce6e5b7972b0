"""The migration end to end on a generated legacy store: plan → subset → evaluate → refused
cut-over → full → evaluate → cut-over → rollback, with a query before and after each move,
and proof from the emulator's books that no step ever pays twice."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from migrate_helpers import (  # noqa: F401 (fixtures)
    CORPUS,
    api_key,
    billed,
    emulator,
    legacy_vectors,
    migrate,
    migrate_with_stderr,
    query,
    write_config,
)
from run_helpers import assert_one_success_per_request_file

pytestmark = pytest.mark.slow

QUERY = "erupting volcanoes spewing molten lava"


def _serving(out: Path) -> dict:
    return json.loads((out / "serving.json").read_text())


def _assert_serves(capsys, out: Path, model: str) -> list:
    """A query answered from the index of ``model``: pointer, index space and hits agree."""
    serving = _serving(out)
    assert serving["model"] == model
    report = json.loads((Path(serving["index"]) / "report.json").read_text())
    assert report["space"]["model"] == model
    code, hits = query(capsys, out, QUERY)
    assert code == 0 and hits
    legacy_ids = {row["id"] for row in CORPUS.legacy_rows()}
    if model == "gemini-embedding-001":
        assert {h["chunk_id"] for h in hits} <= legacy_ids  # legacy rows, by their own ids
    else:
        assert all("/migration/source/rows-" in h["source_uri"] for h in hits)  # re-embedded rows
    assert any("volcano_eruptions" in (h["chunk_id"] + h["source_uri"]) for h in hits)
    return hits


def test_subset_then_full_migration_with_gated_cutover_and_rollback(
        tmp_path, capsys, emulator, legacy_vectors, api_key):
    server, base_url, _ = emulator
    rows, vectors = legacy_vectors
    store = CORPUS.write_store(str(tmp_path / "legacy.parquet"), rows, vectors)
    queries = CORPUS.write_queries(str(tmp_path / "queries.jsonl"))
    config = write_config(tmp_path / "migration.yaml", base_url)
    out = tmp_path / "out"

    code, imported = migrate(capsys, "import", "--config", config, "--legacy", store, "--output", out)
    assert code == 0 and imported["imported"] == len(rows) and imported["dead_letters"] == 0
    assert imported["dimensionality"] == 768 and imported["legacy_index"]["space"]["model"] == "gemini-embedding-001"
    before = _assert_serves(capsys, out, "gemini-embedding-001")

    # plan: spends nothing, prices the subset and the whole
    books = billed(server)
    code, plan = migrate(capsys, "plan", "--output", out, "--fraction", "0.2")
    assert code == 0 and billed(server) == books
    subset_tokens = plan["subset"]["to_pay"]["tokens_total"]
    full_tokens = plan["full"]["all"]["tokens_total"]
    assert 0 < subset_tokens < full_tokens and plan["subset"]["to_pay"]["legacy_rows"] == round(0.2 * len(rows))
    assert plan["full"]["all"]["estimated_cost"]["interactive_usd"] == pytest.approx(
        2 * plan["full"]["all"]["estimated_cost"]["batch_usd"], rel=1e-3)
    assert plan["subset"]["all"]["waves"] >= 1

    # subset: billed exactly as planned, through the ledger
    code, subset = migrate(capsys, "run", "--output", out, "--fraction", "0.2")
    assert code == 0 and subset["tokens"]["billed"] == subset_tokens
    assert subset["coverage"] == pytest.approx(0.2, abs=0.01)
    shadow = out / "migration" / "shadow" / "runs" / subset["run_id"]
    assert_one_success_per_request_file(shadow, server.stats(), exclusive=False)
    legacy_map = pq.read_table(subset["legacy_ids"]).to_pylist()
    assert len(legacy_map) == subset["covered_rows"] and {r["legacy_id"] for r in legacy_map} <= {r["id"] for r in rows}

    code, report = migrate(capsys, "evaluate", "--output", out, "--queries", queries)
    assert code == 0 and report["legacy"]["scope"] == "subset"  # like with like
    assert report["queries"]["used"] == len(CORPUS.LABELLED_QUERIES) and report["queries"]["labelled"] > 0
    assert set(report["metrics"]["legacy"]) == {"recall_at_k", "ndcg_at_k", "mrr_at_k"}
    assert report["threshold_map"] and report["scores"]["new"]["count"] > 0
    full_report = json.loads((out / "migration" / "report.json").read_text())
    assert full_report["most_changed"][0]["legacy"] and full_report["most_changed"][0]["new"]
    for plot in report["plots"].values():
        assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the gate refuses a subset (coverage), with the numbers, and nothing moves
    code, refused, err = migrate_with_stderr(capsys, "cutover", "--output", out)
    assert code == 2 and refused["refused"]
    coverage = next(c for c in refused["gate"]["checks"] if c["check"] == "coverage")
    assert not coverage["passed"] and coverage["value"] == subset["coverage"]
    assert f"coverage = {subset['coverage']} (needs 1.0)" in err
    _assert_serves(capsys, out, "gemini-embedding-001")

    # reruns of run and evaluate spend nothing
    books = billed(server)
    code, again = migrate(capsys, "run", "--output", out, "--fraction", "0.2")
    assert code == 0 and again["up_to_date"] and again["tokens"]["billed"] == 0
    code, _ = migrate(capsys, "evaluate", "--output", out, "--queries", queries)
    assert code == 0 and billed(server) == books

    # the rest: only the rows not embedded yet are paid for
    code, plan = migrate(capsys, "plan", "--output", out)
    assert plan["full"]["to_pay"]["tokens_total"] == full_tokens - subset_tokens
    code, full = migrate(capsys, "run", "--output", out)
    assert code == 0 and full["tokens"]["billed"] == full_tokens - subset_tokens
    assert full["carried_from_previous_run"] == subset["covered_rows"] and full["coverage"] == 1.0
    assert_one_success_per_request_file(out / "migration" / "shadow" / "runs" / full["run_id"],
                                        server.stats(), exclusive=False)

    code, report = migrate(capsys, "evaluate", "--output", out, "--queries", queries)
    assert code == 0 and report["legacy"]["scope"] == "full" and report["gate"]["passed"]
    assert report["metrics"]["new"]["recall_at_k"] >= report["metrics"]["legacy"]["recall_at_k"]
    code, moved = migrate(capsys, "cutover", "--output", out)
    assert code == 0 and moved["cutover"] and not moved["forced"]
    after = _assert_serves(capsys, out, "gemini-embedding-2")
    assert [h["chunk_id"] for h in after] != [h["chunk_id"] for h in before]
    code, same = migrate(capsys, "cutover", "--output", out)
    assert code == 0 and same["already_serving"]

    code, back = migrate(capsys, "rollback", "--output", out)
    assert code == 0 and back["rolled_back"] and back["serving"]["side"] == "legacy"
    assert _assert_serves(capsys, out, "gemini-embedding-001") == before
    code, same = migrate(capsys, "rollback", "--output", out)
    assert code == 0 and same["already_serving"]
    assert (out / "migration" / "shadow" / "runs" / full["run_id"] / "index" / "report.json").exists()

    # a rerun of import is a no-op; across everything, every row was paid for once
    books = billed(server)
    code, again = migrate(capsys, "import", "--config", config, "--legacy", store, "--output", out)
    assert code == 0 and again["already_imported"] and billed(server) == books
    state = json.loads((out / "migration" / "state.json").read_text())
    assert sum(r["tokens"]["billed"] for r in state["runs"]) == full_tokens
    assert [h["action"] for h in state["history"]] == ["cutover", "rollback"]


def test_forced_cutover_is_recorded_and_unlabelled_queries_gate_on_overlap(
        tmp_path, capsys, emulator, legacy_vectors, api_key):
    _, base_url, _ = emulator
    rows, vectors = legacy_vectors
    store = CORPUS.write_store(str(tmp_path / "legacy.jsonl"), rows, vectors, "jsonl")
    queries = CORPUS.write_queries(str(tmp_path / "queries.jsonl"), labelled=False)
    config = write_config(tmp_path / "migration.yaml", base_url,
                          {"gate": {"min_coverage": 0.1, "min_overlap_at_k": 0.95}})
    out = tmp_path / "out"
    assert migrate(capsys, "import", "--config", config, "--legacy", store, "--output", out)[0] == 0
    assert migrate(capsys, "run", "--output", out, "--fraction", "0.25")[0] == 0
    code, report = migrate(capsys, "evaluate", "--output", out, "--queries", queries, "-k", "5")
    assert code == 0 and report["queries"]["labelled"] == 0 and report["metrics"]["legacy"] is None
    assert report["gate"]["basis"] == "overlap" and not report["gate"]["passed"]

    code, refused, err = migrate_with_stderr(capsys, "cutover", "--output", out)
    assert code == 2 and [c["check"] for c in refused["gate"]["checks"] if not c["passed"]] == ["overlap_at_k"]
    assert "overlap_at_k" in err and "(needs 0.95)" in err
    assert json.loads((out / "serving.json").read_text())["side"] == "legacy"
    code, forced = migrate(capsys, "cutover", "--output", out, "--force")
    assert code == 0 and forced["forced"]
    serving = json.loads((out / "serving.json").read_text())
    assert serving["side"] == "shadow" and serving["forced"] and serving["model"] == "gemini-embedding-2"
    state = json.loads((out / "migration" / "state.json").read_text())
    assert state["history"][-1]["forced"] and not state["history"][-1]["gate"]["passed"]

    # re-embedding more after evaluating: the report no longer describes what would be served
    assert migrate(capsys, "run", "--output", out, "--fraction", "0.5")[0] == 0
    code, stale = migrate(capsys, "cutover", "--output", out)
    assert code == 2
    assert not next(c for c in stale["gate"]["checks"] if c["check"] == "evaluated_latest_run")["passed"]


def test_rows_given_by_source_uri_go_through_the_normal_chunkers(
        tmp_path, capsys, emulator, legacy_vectors, api_key):
    """001 could embed only text; a row pointing at an image now enters the index as an image."""

    rows, vectors = legacy_vectors
    image = tmp_path / "media" / "red-square.png"
    image.parent.mkdir()
    Image.new("RGB", (64, 64), (220, 20, 20)).save(image)
    records = [{"id": r["id"], "text": r["text"], "title": r["title"], "task_type": r["task_type"],
                "embedding": [float(x) for x in v], "source_uri": None} for r, v in zip(rows[:6], vectors[:6])]
    records.append({**records[0], "id": "img-1", "text": None, "title": None,
                    "source_uri": str(image.relative_to(tmp_path))})  # relative, as exports often are
    store = tmp_path / "legacy.parquet"
    pq.write_table(pa.Table.from_pylist(records), store)
    out = tmp_path / "out"
    config = write_config(tmp_path / "m.yaml", emulator[1])
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert migrate(capsys, "import", "--config", config, "--legacy", store, "--output", out)[0] == 0
    finally:
        os.chdir(cwd)
    code, plan = migrate(capsys, "plan", "--output", out)
    assert code == 0 and plan["full"]["all"]["chunks_by_modality"] == {"records": 6, "image": 1}
    code, ran = migrate(capsys, "run", "--output", out)
    assert code == 0 and ran["coverage"] == 1.0
    assert ran["tokens"]["billed"] == plan["full"]["all"]["tokens_total"]
    assert ran["tokens"]["billed_by_modality"]["image"] == plan["full"]["all"]["tokens_by_modality"]["image"]
    mapped = {r["legacy_id"]: r for r in pq.read_table(ran["legacy_ids"]).to_pylist()}
    assert mapped["img-1"]["group"] == str(image) and len(mapped) == 7

