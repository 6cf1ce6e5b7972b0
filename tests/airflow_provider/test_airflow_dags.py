"""The shipped DAGs, run with `airflow dags test` against the Gemini API emulator.

- nightly: three consecutive runs (first; one object changed; nothing changed): the
  second pays only for the changed object (from the manifest, via XCom), the third
  submits no batch job and does not defer; the first and second really defer to the
  trigger; the API key (from an Airflow connection) appears in no XCom, log, trigger
  kwargs or file.
- retries: a SIGKILL on the first try of submit and of collect; Airflow's retry
  finishes the run and nothing is paid twice. The wait runs as a classic sensor in
  reschedule mode (the non-deferrable fallback).
- backfill over budget: submit fails at once (no retry), nothing is submitted.

The nightly test also runs with sources and output on gs:// (fake-gcs-server, the
``storage`` fixture parametrized): the emulator's address reaches the embedpipe children
of the operators and of the trigger only through the DAG's ``env`` param.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from airflow_harness import airflow_home  # noqa: F401 (pytest fixture)
from gcs_emulator import gcs_emulator  # noqa: F401 (session fixture, started by the gs:// variant)
from gcs_run import GcsOutput
from run_helpers import (
    LOCAL,
    assert_every_planned_chunk_once,
    assert_one_success_per_request_file,
    emulator_stats,
    job_input_keys,
    jobs_by_request,
    standalone_emulator,
)

pytestmark = pytest.mark.slow

TRIGGER = "embedpipe_airflow.triggers.EmbedpipeRunTrigger"
FAST = ["gemini.poll_interval_s=0.2", "gemini.max_poll_interval_s=1", "index.enabled=false"]
WORDS = ("glacier moraine river delta canyon basalt meadow tundra estuary fjord dune "
         "lagoon plateau caldera geyser marsh").split()


def write_doc(path: Path, seed: int, words: int = 400) -> None:
    import random

    rng = random.Random(seed)
    path.write_text(" ".join(rng.choice(WORDS) for _ in range(words)) + "\n")


@dataclass(frozen=True)
class Storage:
    """Where a test's corpus and output live: local directories, or a fake-gcs-server bucket
    (``gs://<bucket>/corpus/``, ``gs://<bucket>/out``) mirrored locally to read it back."""

    local_corpus: Path
    local_output: Path
    gcs: GcsOutput | None = None

    @property
    def sources(self) -> list[str]:
        return [f"gs://{self.gcs.bucket}/corpus/**"] if self.gcs else [str(self.local_corpus)]

    @property
    def output(self) -> str:
        return self.gcs.uri if self.gcs else str(self.local_output)

    @property
    def env(self) -> dict[str, str]:
        """The non-secret environment the embedpipe children need (the DAG's ``env``)."""
        return self.gcs.env if self.gcs else {}

    def source_uri(self, name: str) -> str:
        return f"gs://{self.gcs.bucket}/corpus/{name}" if self.gcs else str(self.local_corpus / name)

    def write_doc(self, name: str, seed: int) -> None:
        write_doc(self.local_corpus / name, seed)
        if self.gcs:
            self.gcs.emulator.client().bucket(self.gcs.bucket).blob(f"corpus/{name}").upload_from_filename(
                str(self.local_corpus / name))

    def output_dir(self) -> Path:
        """The output as a local directory (for gs://, a fresh mirror of the bucket's)."""
        return self.gcs.mirror(self.local_output) if self.gcs else self.local_output


@pytest.fixture
def storage(request, tmp_path) -> Storage:
    """Local unless a test parametrizes it (``indirect``) with "gs"; three documents."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    gcs = None
    if getattr(request, "param", "local") == "gs":
        emulator = request.getfixturevalue("gcs_emulator")
        gcs = GcsOutput(emulator, emulator.create_bucket())
    place = Storage(corpus, tmp_path / "out", gcs)
    for i in range(3):
        place.write_doc(f"doc{i}.txt", seed=i)
    return place


def end_held_jobs(server) -> None:
    """Stop holding new batch jobs and let the held ones end (once the wait waits)."""
    server.hold_jobs(None)
    server.release_jobs()


def part_rows(output: Path, run_id: str) -> list[dict]:
    """Rows this run embedded itself (part-*, not the carried ones)."""
    rows = []
    for part in sorted(Path(output, "runs", run_id, "embeddings").glob("part-*.parquet")):
        rows += pq.read_table(part, columns=["chunk_id", "source_uri", "token_count"]).to_pylist()
    return rows


@pytest.mark.parametrize("storage", ["local", "gs"], indirect=True)
def test_nightly_pays_only_for_what_changed(airflow_home, storage, tmp_path):
    with standalone_emulator(tmp_path / "emulator") as (server, base_url, key):
        conf = {
            "config": LOCAL, "output": storage.output, "sources": storage.sources, "poll_seconds": 1,
            "overrides": ["backend=gemini", f"gemini.base_url={base_url}", *FAST], "env": storage.env,
        }
        # The key reaches the launching processes through a connection, nowhere else.
        env = {"AIRFLOW_CONN_EMBEDPIPE_GEMINI": json.dumps({"conn_type": "embedpipe", "password": key})}

        def run(day: str):
            server.hold_jobs()  # batch jobs stay PENDING until the wait has deferred
            return airflow_home.dags_test("embedpipe_nightly", day, conf, env=env,
                                          on_wait=lambda: end_held_jobs(server))

        first = run("2026-11-01")
        assert first.returncode == 0 and first.state == "success", first.explain()
        submitted, waited, collected = (first.xcom(t) for t in ("submit", "wait", "collect"))
        run1 = submitted["run_id"]
        assert first.xcom("submit", key="run_id") == run1 == collected["run_id"]
        assert submitted["request_files"] >= 1 and submitted["tokens_planned"] > 0
        # The wait really deferred: the task ran in the triggerer, which polled `status`.
        assert waited["deferred"] is True and waited["polls"] >= 1, waited
        assert [c for c, _ in first.triggers("wait")] == [TRIGGER], first.explain()
        counts = collected["counts"]
        assert counts["listed"] == 3 and counts["chunked_objects"] == 3
        assert counts["embedded_rows"] == counts["chunks"] > 0 and counts["dead_chunks"] == 0
        assert collected["tokens"]["billed"] == collected["tokens"]["planned"] == submitted["tokens_planned"]
        books = emulator_stats(tmp_path / "emulator")
        output = storage.output_dir()
        assert_one_success_per_request_file(output / "runs" / run1, books)
        assert_every_planned_chunk_once(output / "runs" / run1)
        first_rows = part_rows(output, run1)

        storage.write_doc("doc1.txt", seed=101)  # one object changes
        second = run("2026-11-02")
        assert second.returncode == 0 and second.state == "success", second.explain()
        submitted, waited, collected = (second.xcom(t) for t in ("submit", "wait", "collect"))
        run2 = submitted["run_id"]
        assert run2 != run1 and collected["previous_run"] == run1
        assert submitted["objects"]["by_status"] == {"chunked": 1, "unchanged": 2}
        assert waited["deferred"] is True
        rows = part_rows(storage.output_dir(), run2)
        changed = storage.source_uri("doc1.txt")
        assert rows and {r["source_uri"] for r in rows} == {changed}
        billed = collected["tokens"]["billed"]
        # Only that object's tokens: the manifest's bill (XCom) is exactly its rows' tokens,
        # and exactly what the service billed for this run's jobs, whose lines are its chunks.
        assert billed == sum(r["token_count"] for r in rows) > 0
        books2 = emulator_stats(tmp_path / "emulator")
        assert books2["billed_tokens"] - books["billed_tokens"] == billed
        jobs = [j for js in jobs_by_request(books2, run2).values() for j in js]
        sent = {k for job in jobs for k in job_input_keys(tmp_path / "emulator", job)}
        assert sent == {r["chunk_id"] for r in rows}
        assert collected["counts"]["unchanged"] == 2
        assert collected["counts"]["carried_rows"] == counts["embedded_rows"] - len(
            [r for r in first_rows if r["source_uri"] == changed])

        third = run("2026-11-03")  # nothing changed since the second run
        assert third.returncode == 0 and third.state == "success", third.explain()
        submitted, waited, collected = (third.xcom(t) for t in ("submit", "wait", "collect"))
        assert submitted["request_files"] == 0 and submitted["tokens_planned"] == 0
        assert waited["deferred"] is False and third.triggers("wait") == []
        assert collected["tokens"]["billed"] == 0 and collected["jobs"]["batch_jobs"] == 0
        assert collected["counts"]["unchanged"] == 3
        assert collected["counts"]["carried_rows"] == counts["embedded_rows"]
        assert len(emulator_stats(tmp_path / "emulator")["jobs"]) == len(books2["jobs"])

    for dag_run in (first, second, third):
        assert key not in dag_run.log
        for _, kwargs in dag_run.triggers("wait"):
            assert kwargs["launch"]["gemini_conn_id"] == "embedpipe_gemini"
            assert kwargs["launch"]["env"] == storage.env  # how the trigger's children reach GCS
            assert key not in json.dumps(kwargs)
    assert airflow_home.files_containing(key) == []  # metadata DB (XComs, triggers), logs, config
    output = storage.output_dir()
    assert [p for p in output.rglob("*") if p.is_file() and key.encode() in p.read_bytes()] == []


def test_task_retries_never_pay_twice(airflow_home, storage, tmp_path):
    state_dir = tmp_path / "emulator"
    with standalone_emulator(state_dir) as (server, base_url, key):
        conf = {
            "config": LOCAL, "output": storage.output, "sources": storage.sources,
            "overrides": ["backend=gemini", f"gemini.base_url={base_url}", "requests.max_lines_per_file=2",
                          *FAST],
        }
        server.hold_jobs()  # until the wait has been rescheduled once
        # The probe's operators take the key from the worker's environment (no connection).
        probe = airflow_home.dags_test("embedpipe_retry_probe", "2026-11-01", conf, env={"GEMINI_API_KEY": key},
                                       on_wait=lambda: end_held_jobs(server))
    assert probe.returncode == 0 and probe.state == "success", probe.explain()
    # The first try of each was SIGKILLed (after creating a batch job; after writing a
    # Parquet part); Airflow retried it and the retry finished the step.
    assert probe.task("submit") == ("success", 2), probe.explain()
    assert probe.task("collect") == ("success", 2), probe.explain()
    assert "was killed by signal 9" in probe.log, probe.explain()
    # The non-deferrable wait: reschedule mode freed the slot between checks.
    assert probe.task("wait") == ("success", 1) and probe.reschedules("wait") >= 1
    assert probe.triggers("wait") == []
    run_dir = storage.local_output / "runs" / probe.xcom("submit", key="run_id")
    books = emulator_stats(state_dir)
    jobs = assert_one_success_per_request_file(run_dir, books)
    assert len(books["jobs"]) == len(jobs) >= 2  # one job per request file, none created twice
    assert all(len(mine) == 1 for mine in jobs.values())
    assert_every_planned_chunk_once(run_dir)
    collected = probe.xcom("collect")
    assert collected["tokens"]["billed"] == collected["tokens"]["planned"] == books["billed_tokens"]


def test_backfill_over_budget_fails_at_once_and_submits_nothing(airflow_home, storage):
    conf = {"config": LOCAL, "output": storage.output, "sources": storage.sources,
            "max_cost_usd": 0.000001, "overrides": FAST, "gemini_conn_id": None}
    backfill = airflow_home.dags_test("embedpipe_backfill", "2026-11-01", conf)
    assert backfill.returncode != 0 and backfill.state == "failed", backfill.explain()
    assert backfill.task("submit") == ("failed", 1), backfill.explain()  # retries=2, none used
    assert "max_cost_usd" in backfill.log, backfill.explain()
    assert backfill.task("wait")[0] == backfill.task("collect")[0] == "upstream_failed"
    jobs = storage.local_output / ".emulator" / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir())
