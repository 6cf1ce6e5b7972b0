"""The shipped migration DAGs, run with `airflow dags test` against the Gemini API emulator
(it serves gemini-embedding-001 and Gemini Embedding 2): one run of ``embedpipe_migration``
on a generated 001 export (import → plan the pilot → re-embed the pilot → evaluate →
re-embed the rest → evaluate → cut over), then one run of ``embedpipe_migration_rollback``.

Checked: both DAG runs succeed; serving.json points at the new run after the cut-over and
at the legacy index after the rollback; the evaluate tasks' XComs carry the numbers; the
pilot and the full run together send every chunk to the Batch API exactly once and the
emulator billed exactly what the plan priced.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow_harness import airflow_home  # noqa: F401 (pytest fixture)
from migrate_helpers import CORPUS, write_config
from run_helpers import (
    all_embeddings,
    assert_one_success_per_request_file,
    job_input_keys,
    jobs_by_request,
    read_json,
    standalone_emulator,
)

pytestmark = pytest.mark.slow

PILOT = 0.2
FLOW = ("import_legacy", "plan", "reembed_pilot", "evaluate_pilot", "reembed_all", "evaluate_all", "cutover")
METRICS = {"recall_at_k", "ndcg_at_k", "mrr_at_k"}


def sent_keys(state_dir: Path, stats: dict, run_id: str) -> list[str]:
    """The keys the run's batch jobs sent, one entry per line sent (a key twice: paid twice)."""
    return [key for jobs in jobs_by_request(stats, run_id).values() for job in jobs
            for key in job_input_keys(state_dir, job)]


def test_migration_dag_cuts_over_and_the_rollback_dag_goes_back(airflow_home, tmp_path):
    state_dir = tmp_path / "emulator"
    with standalone_emulator(state_dir) as (server, base_url, key):
        rows = CORPUS.legacy_rows()
        store = CORPUS.write_store(str(tmp_path / "legacy.parquet"), rows,
                                   CORPUS.embed_001(rows, base_url, key, 768))
        output = tmp_path / "out"
        conf = {
            "config": str(write_config(tmp_path / "migration.yaml", base_url, key_env="GEMINI_API_KEY")),
            "output": str(output), "legacy": store, "pilot_fraction": PILOT, "k": 5,
            "queries": CORPUS.write_queries(str(tmp_path / "queries.jsonl")),
        }
        # The key reaches the embedpipe children through the DAGs' default connection only.
        env = {"AIRFLOW_CONN_EMBEDPIPE_GEMINI": json.dumps({"conn_type": "embedpipe", "password": key})}
        billed_before = server.stats()["batch_billed_tokens"]
        migration = airflow_home.dags_test("embedpipe_migration", "2026-11-01", conf, env=env)
        assert migration.returncode == 0 and migration.state == "success", migration.explain()
        stats = server.stats()
        after_cutover = read_json(output / "serving.json")
        rollback = airflow_home.dags_test("embedpipe_migration_rollback", "2026-11-01",
                                          {"output": str(output)}, env=env)
    assert [migration.task(t) for t in FLOW] == [("success", 1)] * len(FLOW), migration.explain()
    assert rollback.returncode == 0 and rollback.state == "success", rollback.explain()
    assert key not in migration.log + rollback.log

    imported = migration.xcom("import_legacy")
    assert imported["imported"] == len(rows) and imported["dead_letters"] == 0
    assert imported["legacy_index"]["space"]["model"] == "gemini-embedding-001"

    # The pilot pays what the plan priced for it; the full run only the rest.
    plan, pilot, full = (migration.xcom(t) for t in ("plan", "reembed_pilot", "reembed_all"))
    pilot_tokens, all_tokens = plan["subset"]["to_pay"]["tokens_total"], plan["full"]["all"]["tokens_total"]
    assert 0 < pilot_tokens < all_tokens
    assert pilot["tokens"]["billed"] == pilot_tokens and pilot["coverage"] == pytest.approx(PILOT, abs=0.01)
    assert full["tokens"]["billed"] == all_tokens - pilot_tokens and full["coverage"] == 1.0
    assert full["carried_from_previous_run"] == pilot["covered_rows"]
    assert stats["batch_billed_tokens"] - billed_before == all_tokens

    # Every chunk sent to the Batch API once across the two runs: one successful job per
    # request file, and the keys of the jobs' lines are the served index's chunks, once each.
    shadow = output / "migration" / "shadow" / "runs"
    for run in (pilot, full):
        assert_one_success_per_request_file(shadow / run["run_id"], stats, exclusive=False)
    sent = sent_keys(state_dir, stats, pilot["run_id"]) + sent_keys(state_dir, stats, full["run_id"])
    assert len(sent) == len(set(sent))
    assert set(sent) == set(all_embeddings(shadow / full["run_id"]).column("chunk_id").to_pylist())

    # The evaluate tasks hand the numbers on: the pilot against the same legacy subset,
    # the full run against the whole legacy index, with a passing gate.
    for task, scope, passed in (("evaluate_pilot", "subset", False), ("evaluate_all", "full", True)):
        report = migration.xcom(task)
        assert report["legacy"]["scope"] == scope and report["k"] == 5, report
        assert report["queries"]["used"] == len(CORPUS.LABELLED_QUERIES) and report["queries"]["labelled"] > 0
        assert METRICS <= set(report["metrics"]["new"]) and METRICS <= set(report["metrics"]["legacy"])
        assert report["gate"]["passed"] is passed, report["gate"]
    assert report["new"]["run_id"] == full["run_id"]
    assert report["metrics"]["new"]["recall_at_k"] >= report["metrics"]["legacy"]["recall_at_k"]

    cutover = migration.xcom("cutover")
    assert cutover["cutover"] and not cutover["forced"] and cutover["previous"]["side"] == "legacy"
    assert cutover["serving"] == after_cutover
    assert (after_cutover["side"], after_cutover["run_id"], after_cutover["model"]) == (
        "shadow", full["run_id"], "gemini-embedding-2")
    assert Path(after_cutover["index"]) == shadow / full["run_id"] / "index"

    back = rollback.xcom("rollback")
    assert back["rolled_back"] and back["previous"]["run_id"] == full["run_id"]
    serving = read_json(output / "serving.json")
    assert (serving["side"], serving["model"]) == ("legacy", "gemini-embedding-001")
    assert serving["index"] == imported["legacy_index"]["dir"] and serving["run_id"] != full["run_id"]
    state = read_json(output / "migration" / "state.json")
    assert [h["action"] for h in state["history"]] == ["cutover", "rollback"]
    assert state["history"][0]["to"]["run_id"] == full["run_id"]
