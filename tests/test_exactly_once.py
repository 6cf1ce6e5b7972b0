"""End-to-end reliability: money is spent at most once per chunk, and nothing is lost.

Every test drives the real ``embedpipe`` command line in subprocesses against the API
emulator and then audits the emulator's books (which batch jobs exist, for which
request file, what they billed) against what the run left behind (ledger, request
files, Parquet, dead letters, manifest):

1. ``kill -9`` at five named points (``EMBEDPIPE_CRASH_AT``), then a plain rerun;
2. two ``submit`` processes racing on one output against one shared emulator;
3. a fault matrix (429/5xx bursts, a FAILED and an EXPIRED job, per-line errors,
   shuffled output) and an emulator restart while jobs are pending;
4. an incremental rerun after one change, one delete and one addition;
5. split-mode exit codes (75 while pending);
6. the budget guard and ``plan`` (no job created).
"""
from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from gcs_emulator import gcs_emulator  # noqa: F401 (session fixture of gcs_output)
from gcs_run import gcs_output  # noqa: F401 (pytest fixture)
from pipeline.emulator import FaultConfig, HttpFault
from pipeline.emulator.faults import Faults
from run_helpers import (
    CRASH_POINTS,
    EXIT_PENDING,
    Result,
    all_embeddings,
    assert_every_planned_chunk_once,
    assert_one_success_per_request_file,
    cli_env,
    deadletters,
    embeddings,
    emulator_stats,
    embedpipe,
    fast_forward_jobs,
    gemini_args,
    job_input_keys,
    jobs_by_request,
    killed_by_sigkill,
    ledger,
    only_run,
    planned_keys,
    read_json,
    request_files,
    run_args,
    run_dirs,
    standalone_emulator,
    start,
    token_sum,
    vectors,
    wait_then_collect,
    write_sample_corpus,
)

pytestmark = pytest.mark.slow

ONE_WAVE = ("--set", "quota.enqueued_tokens=500000")  # every request file in the first wave


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_sample_corpus(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def clean_run(corpus, tmp_path_factory) -> Path:
    """A run with no crash and no fault: the reference vectors."""
    out = tmp_path_factory.mktemp("clean") / "out"
    res = embedpipe(*run_args("run", corpus, out), env=cli_env())
    assert res.returncode == 0, res.explain()
    run_dir = only_run(out)
    assert_every_planned_chunk_once(run_dir)
    return run_dir


def assert_same_vectors(table, reference_run: Path, ids=None) -> None:
    """Vectors equal the reference run's for the same chunk ids (joined by key)."""
    got = vectors(table)
    want = vectors(embeddings(reference_run))
    ids = set(got) if ids is None else set(ids)
    assert ids <= set(want), f"{len(ids - set(want))} chunk ids the reference run does not have"
    for chunk_id in ids:
        np.testing.assert_allclose(got[chunk_id], want[chunk_id], rtol=0, atol=1e-6,
                                   err_msg=f"vector of {chunk_id}")


# -- 1. kill -9 at every crash point, then rerun ---------------------------------------
@dataclass
class CrashScenario:
    point: str
    output: Path
    crashed: Result
    after_crash: dict
    rerun: Result


def _after_crash(output: Path) -> dict:
    """What the killed process left: ledger records, emulator jobs, results, parts."""
    run_dir = only_run(output)
    state_dir = output / ".emulator"
    return {
        "ledger": ledger(run_dir) if (run_dir / "ledger").exists() else {},
        "jobs": emulator_stats(state_dir)["jobs"] if state_dir.exists() else [],
        "results": sorted(p.name for p in (run_dir / "results").glob("*.jsonl")),
        "parts": sorted(p.name for p in (run_dir / "embeddings").glob("part-*.parquet")),
        "manifest": (run_dir / "manifest.json").exists(),
    }


@pytest.fixture(scope="module")
def crash_scenarios(corpus, tmp_path_factory) -> dict[str, CrashScenario]:
    """For every crash point, on its own output: run killed there, then a plain rerun.
    The five scenarios are independent, so they run side by side."""
    root = tmp_path_factory.mktemp("crash")

    def scenario(point: str) -> CrashScenario:
        out = root / point
        crashed = embedpipe(*run_args("run", corpus, out), env=cli_env(crash_at=point))
        state = _after_crash(out) if run_dirs(out) else {}
        rerun = embedpipe(*run_args("run", corpus, out), env=cli_env())
        return CrashScenario(point, out, crashed, state, rerun)

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {point: pool.submit(scenario, point) for point in CRASH_POINTS}
        return {point: f.result() for point, f in futures.items()}


def _check_crashed_where_told(point: str, s: dict) -> None:
    """The kill really happened at that point (else the test would prove nothing)."""
    records = list(s["ledger"].values())
    states = [r["state"] for r in records]
    if point == "claimed":  # ledger record claimed, nothing uploaded, no job
        assert states == ["CLAIMED"] and not records[0]["file_name"] and not records[0]["job_name"]
        assert s["jobs"] == []
    elif point == "created":  # the job exists, the ledger does not know its name yet
        assert states == ["UPLOADED"] and records[0]["file_name"] and not records[0]["job_name"]
        assert [j["display_name"] for j in s["jobs"]] == [records[0]["display_name"]]
    elif point == "polled":
        assert records and all(r["job_name"] for r in records) and "COLLECTED" not in states
        assert len(s["jobs"]) == len(records)
    elif point == "downloaded":  # results on disk, the ledger still says SUCCEEDED
        # Downloads run concurrently: the kill comes as the first one is recorded, and
        # another may have finished its file in that moment (seen once under load).
        assert s["results"] and "COLLECTED" not in states
        assert all(s["ledger"][name[: -len(".jsonl")]]["state"] == "SUCCEEDED" for name in s["results"])
    elif point == "part-written":  # every job collected, one part written, no manifest
        assert records and set(states) == {"COLLECTED"}
        assert len(s["parts"]) == 1 and not s["manifest"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_then_rerun_pays_once_and_loses_nothing(point, crash_scenarios, clean_run):
    sc = crash_scenarios[point]
    assert killed_by_sigkill(sc.crashed.returncode), sc.crashed.explain()
    _check_crashed_where_told(point, sc.after_crash)
    assert sc.rerun.returncode == 0, sc.rerun.explain()
    assert "resuming unfinished run" in sc.rerun.stderr, sc.rerun.explain()

    run_dir = only_run(sc.output)  # the rerun continued the same run id
    stats = emulator_stats(sc.output / ".emulator")
    jobs = assert_one_success_per_request_file(run_dir, stats)
    # No fault was injected: no resubmission and no follow-up file was needed.
    assert set(jobs) == {f["name"] for f in request_files(run_dir)}
    assert all(not r["history"] for r in ledger(run_dir).values())
    assert len(stats["jobs"]) == len(request_files(run_dir))

    table = assert_every_planned_chunk_once(run_dir)
    manifest = read_json(run_dir / "manifest.json")
    assert stats["billed_tokens"] == manifest["tokens"]["planned"] == manifest["tokens"]["billed"]
    assert stats["billed_tokens"] == token_sum(table)
    assert manifest["counts"]["embedded_rows"] == manifest["counts"]["chunks"] == table.num_rows
    assert_same_vectors(table, clean_run)


# -- 2. two concurrent submits ---------------------------------------------------------
@pytest.mark.parametrize("where", ["local", "gcs"])
def test_two_concurrent_submits_create_one_job_per_request_file(corpus, tmp_path, request, where):
    """The race, with the ledger on local disk (exclusive create) and on GCS (fake-gcs-server:
    ``if_generation_match=0``)."""
    gcs = request.getfixturevalue("gcs_output") if where == "gcs" else None
    out = gcs.uri if gcs else tmp_path / "out"
    with standalone_emulator(tmp_path / "emulator", quota_tokens=3000) as (server, url, key):
        env = {**cli_env(api_key=key), **(gcs.env if gcs else {})}
        args = run_args("submit", corpus, out, *gemini_args(url))
        first, second = start(*args, env=env), start(*args, env=env)
        results = [first.wait(), second.wait()]
        for res in results:
            assert res.returncode == 0, res.explain()
        run_ids = {res.stdout.strip().splitlines()[-1] for res in results}
        assert len(run_ids) == 1, f"the two submits started different runs: {run_ids}"
        polls, collect = wait_then_collect(out, env)
        assert collect.returncode == 0, collect.explain()
        stats = server.stats()

    run_dir = only_run(gcs.mirror(tmp_path / "mirror") if gcs else out)
    assert run_dir.name in run_ids
    jobs = assert_one_success_per_request_file(run_dir, stats)
    assert set(jobs) == {f["name"] for f in request_files(run_dir)}
    assert stats["jobs_created"] == len(stats["jobs"]) == len(request_files(run_dir))
    table = assert_every_planned_chunk_once(run_dir)
    plan = read_json(run_dir / "plan.json")
    assert plan["waves"] > 1  # the race also covered later waves
    assert stats["billed_tokens"] == token_sum(table) == plan["tokens_total"]


# -- 3. faults -------------------------------------------------------------------------
def _seed_hitting(keys: list[str], fraction: float) -> tuple[int, set[str]]:
    """A fault seed whose ``fraction`` of per-line errors hits one or two of ``keys``
    (the fraction is decided per key by a seeded hash)."""
    for seed in range(10_000):
        faults = Faults(FaultConfig(line_error_fraction=fraction, seed=seed))
        hit = {k for k in keys if faults.line_error(k)}
        if 1 <= len(hit) <= 2:
            return seed, hit
    raise AssertionError("no seed hits a key")


def test_fault_matrix_ends_embedded_or_dead_lettered_and_bills_once(corpus, clean_run, tmp_path):
    keys = planned_keys(clean_run)  # same sources, same chunk ids
    seed, hit = _seed_hitting(keys, 0.01)
    create, get, upload = r":asyncBatchEmbedContent$", r"/batches/[a-z0-9]+$", r"^/upload/"
    faults = FaultConfig(
        http_errors=[
            HttpFault(count=2, code=429, method="POST", path=create, retry_delay_s=0.1),
            HttpFault(count=1, code=503, method="POST", path=create),
            HttpFault(count=1, code=500, method="POST", path=create, after=True),  # response lost
            HttpFault(count=1, code=503, method="GET", path=get),
            HttpFault(count=1, code=429, method="GET", path=get, retry_delay_s=0.1),
            HttpFault(count=1, code=503, method="POST", path=upload),
            HttpFault(count=1, code=500, method="POST", path=upload),
        ],
        fail_next_jobs=1,
        expire_next_jobs=1,
        line_error_fraction=0.01,
        shuffle_output=True,
        seed=seed,
    )
    out, state_dir = tmp_path / "out", tmp_path / "emulator"
    with standalone_emulator(state_dir, faults=faults, quota_tokens=3000) as (server, url, key):
        res = embedpipe(*run_args("run", corpus, out, *gemini_args(url)), env=cli_env(api_key=key))
        stats = server.stats()
        left = server.faults.snapshot()
    # Completed, with dead letters above the (zero) tolerance.
    assert res.returncode == 3, res.explain()
    assert [e["count"] for e in left["http_errors"]] == [0] * len(faults.http_errors), "faults not met"
    assert left["fail_next_jobs"] == left["expire_next_jobs"] == 0

    run_dir = only_run(out)
    jobs = assert_one_success_per_request_file(run_dir, stats)
    history = sorted(h[1] for r in ledger(run_dir).values() for h in r["history"])
    assert history == ["EXPIRED", "FAILED"]  # each resubmitted once, as a new job
    assert sorted(j["state"] for j in stats["jobs"] if j["state"] != "SUCCEEDED") == ["EXPIRED", "FAILED"]
    # Follow-up files resubmitted only the failed keys, up to max_attempts (3) in all.
    followups = {name: job_input_keys(state_dir, js[0]) for name, js in jobs.items() if "-r" in name}
    assert followups and all(set(k) <= hit for k in followups.values()), followups
    assert {name.rsplit("-r", 1)[1] for name in followups} == {"1", "2"}

    table = embeddings(run_dir)
    embedded = table.column("chunk_id").to_pylist()
    dead = deadletters(run_dir)
    dead_ids = [d["chunk_id"] for d in dead]
    assert len(embedded) == len(set(embedded)) and len(dead_ids) == len(set(dead_ids))
    assert set(dead_ids) == hit and not set(embedded) & hit
    assert sorted(embedded + dead_ids) == sorted(keys)  # every chunk ends somewhere, once
    for d in dead:
        assert d["stage"] == "collect" and d["error_class"] == "api_error_13", d
        assert "injected" in d["message"] and d["attempts"] >= 3, d
    assert_same_vectors(table, clean_run)  # shuffled output joined by key

    manifest = read_json(run_dir / "manifest.json")
    assert stats["billed_tokens"] == token_sum(table) == manifest["tokens"]["billed"]
    c = manifest["counts"]
    assert c["chunks"] == c["embedded_rows"] + c["dead_chunks"] == len(keys)


def test_redrive_embeds_dead_letters_once_their_cause_is_gone(corpus, clean_run, tmp_path):
    keys = sorted(planned_keys(clean_run))
    doomed = keys[:2]  # these two fail on every attempt while the fault is on
    out, state_dir = tmp_path / "out", tmp_path / "emulator"
    faults = FaultConfig(line_error_keys=doomed, line_error_code=14)  # UNAVAILABLE: retryable
    with standalone_emulator(state_dir, faults=faults) as (server, url, key):
        env = cli_env(api_key=key)
        first = embedpipe(*run_args("run", corpus, out, *gemini_args(url)), env=env)
        assert first.returncode == 3, first.explain()
        run_dir = only_run(out)
        assert sorted(d["chunk_id"] for d in deadletters(run_dir, "collect*.jsonl")) == doomed
        server.faults.update({"line_error_keys": []})
        again = embedpipe("redrive", "--output", str(out), env=env)
        stats = server.stats()
    assert again.returncode == 0, again.explain()
    assert not deadletters(run_dir, "collect*.jsonl")
    table = assert_every_planned_chunk_once(run_dir)
    assert_same_vectors(table, clean_run)
    # each doomed key was sent max_attempts times before, once more by redrive; only the
    # successful line is billed
    assert stats["billed_tokens"] == token_sum(table)
    redriven = [n for n in ledger(run_dir) if n.endswith("-r3")]
    assert redriven, "redrive should add one follow-up file to the family"


def test_a_refused_create_is_retried_then_its_chunks_are_dead_lettered(corpus, tmp_path):
    out, state_dir = tmp_path / "out", tmp_path / "emulator"
    refuse = HttpFault(count=1000, code=400, method="POST", path=r":asyncBatchEmbedContent$")
    with standalone_emulator(state_dir, faults=FaultConfig(http_errors=[refuse])) as (server, url, key):
        res = embedpipe(*run_args("run", corpus, out, *gemini_args(url)), env=cli_env(api_key=key))
        stats = server.stats()
        refused = 1000 - server.faults.snapshot()["http_errors"][0]["count"]
    assert res.returncode == 3, res.explain()
    assert stats["jobs_created"] == 0 and stats["billed_tokens"] == 0
    run_dir = only_run(out)
    records = ledger(run_dir).values()
    assert {(r["state"], r["attempts"]) for r in records} == {("FAILED", 3)}
    assert refused == 3 * len(records)  # bounded: max_attempts creates per file, no more
    dead = deadletters(run_dir, "collect*.jsonl")
    assert sorted(d["chunk_id"] for d in dead) == sorted(planned_keys(run_dir))
    assert all("400" in d["message"] and d["attempts"] == 3 for d in dead), dead[0]


def test_emulator_restart_while_jobs_pending(corpus, tmp_path):
    out, state_dir = tmp_path / "out", tmp_path / "emulator"
    held = FaultConfig(hold_jobs="RUNNING")  # the jobs stay active across the restart
    with standalone_emulator(state_dir, faults=held) as (server, url, key):
        env = cli_env(api_key=key)
        res = embedpipe(*run_args("submit", corpus, out, *gemini_args(url), *ONE_WAVE), env=env)
        assert res.returncode == 0, res.explain()
        before = server.stats()["jobs"]
    assert before and {j["state"] for j in before} == {"RUNNING"}, before

    port = urlsplit(url).port
    with standalone_emulator(state_dir, port=port, api_key=key) as (server, _url, _):
        pending = embedpipe("status", "--output", str(out), env=env)
        assert pending.returncode == EXIT_PENDING, pending.explain()
        assert sorted(server.release_jobs()) == sorted(j["name"] for j in before)
        assert server.wait_idle()
        polls, collect = wait_then_collect(out, env)
        assert collect.returncode == 0, collect.explain()
        stats = server.stats()

    run_dir = only_run(out)
    assert {j["name"] for j in stats["jobs"]} == {j["name"] for j in before}  # no job lost or added
    jobs = assert_one_success_per_request_file(run_dir, stats)
    assert set(jobs) == {f["name"] for f in request_files(run_dir)}
    table = assert_every_planned_chunk_once(run_dir)
    assert stats["billed_tokens"] == token_sum(table) == read_json(run_dir / "plan.json")["tokens_total"]


# -- 4. incremental rerun --------------------------------------------------------------
_SYLLABLES = ("ka", "lo", "mi", "ne", "su", "tor", "vak", "zen", "pri", "dul", "gor", "hex",
              "jun", "qua", "rix", "sol", "tam", "wen", "yul", "bor")


def _words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))) for _ in range(n))


def write_small_docs(directory: Path, count: int) -> None:
    directory.mkdir(parents=True)
    for i in range(count):
        rng = random.Random(i)
        (directory / f"note-{i:03d}.txt").write_text(f"Note {i}. {_words(rng, 40)}.\n")


def test_incremental_rerun_pays_only_for_changed_and_added(tmp_path):
    docs, out, scratch = tmp_path / "docs", tmp_path / "out", tmp_path / "scratch"
    write_small_docs(docs, 100)
    env = cli_env()
    first = embedpipe(*run_args("run", docs, out), env=env)
    assert first.returncode == 0, first.explain()
    first_run = only_run(out)

    changed, deleted, added = docs / "note-007.txt", docs / "note-042.txt", docs / "note-100.txt"
    changed.write_text(changed.read_text() + f"Revised: {_words(random.Random(-1), 30)}.\n")
    deleted.unlink()
    added.write_text(f"Note 100. {_words(random.Random(100), 40)}.\n")
    rerun_p = start(*run_args("run", docs, out), env=env)
    scratch_p = start(*run_args("run", docs, scratch), env=env)  # the same corpus, from scratch
    rerun, fresh = rerun_p.wait(), scratch_p.wait()
    assert rerun.returncode == 0, rerun.explain()
    assert fresh.returncode == 0, fresh.explain()

    (second,) = [d for d in run_dirs(out) if d != first_run]
    manifest = read_json(second / "manifest.json")
    c = manifest["counts"]
    assert manifest["previous_run"] == first_run.name
    assert c["listed"] == 100 == c["unchanged"] + c["chunked_objects"] + c["empty_objects"] + c["dead_objects"]
    assert (c["unchanged"], c["chunked_objects"], c["tombstoned"]) == (98, 2, 1)

    scratch_table = embeddings(only_run(scratch))
    uris = dict(zip(scratch_table.column("chunk_id").to_pylist(),
                    scratch_table.column("source_uri").to_pylist()))
    new_chunks = sorted(k for k, uri in uris.items() if Path(uri).name in {changed.name, added.name})
    assert new_chunks

    # The emulator's books: the rerun's jobs held exactly the new chunks, once each.
    state_dir = out / ".emulator"
    stats = emulator_stats(state_dir)
    rerun_jobs = assert_one_success_per_request_file(second, stats, exclusive=False)
    sent = [k for js in rerun_jobs.values() for j in js for k in job_input_keys(state_dir, j)]
    assert sorted(sent) == new_chunks
    first_jobs = jobs_by_request(stats, first_run.name)
    assert sum(map(len, first_jobs.values())) + sum(map(len, rerun_jobs.values())) == len(stats["jobs"])
    rerun_billed = sum(j["billed_tokens"] for js in rerun_jobs.values() for j in js)
    part_rows = embeddings(second, "part-*.parquet")
    assert rerun_billed == token_sum(part_rows) == manifest["tokens"]["billed"]

    # Outputs (part-* + carried-*) equal the from-scratch run: same chunk ids, same vectors.
    table = all_embeddings(second)
    ids = table.column("chunk_id").to_pylist()
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(uris)
    assert sorted(part_rows.column("chunk_id").to_pylist()) == new_chunks
    assert not any(Path(u).name == deleted.name for u in table.column("source_uri").to_pylist())
    assert_same_vectors(table, only_run(scratch))
    assert c["embedded_rows"] + c["carried_rows"] == len(ids)


# -- 5. split-mode exit codes ----------------------------------------------------------
def test_split_mode_exit_codes(corpus, tmp_path):
    out, state_dir = tmp_path / "out", tmp_path / "emulator"
    with standalone_emulator(state_dir, running_seconds=3600) as (server, url, key):
        env = cli_env(api_key=key)
        submit = embedpipe(*run_args("submit", corpus, out, *gemini_args(url), *ONE_WAVE), env=env)
        assert submit.returncode == 0, submit.explain()
        status = embedpipe("status", "--output", str(out), env=env)
        assert status.returncode == EXIT_PENDING, status.explain()
        assert json.loads(status.stdout)["pending"] is True
        collect = embedpipe("collect", "--output", str(out), env=env)
        assert collect.returncode == EXIT_PENDING, collect.explain()
        assert "pending" in collect.stderr
    run_dir = only_run(out)
    assert not list((run_dir / "embeddings").glob("*.parquet")) and not (run_dir / "manifest.json").exists()

    assert fast_forward_jobs(state_dir) == len(request_files(run_dir))  # the jobs' time has come
    with standalone_emulator(state_dir, port=urlsplit(url).port, api_key=key) as (server, _url, _):
        polls, collect = wait_then_collect(out, env)
        assert polls[-1].returncode == 0 and json.loads(polls[-1].stdout)["pending"] is False
        assert collect.returncode == 0, collect.explain()
        stats = server.stats()
    assert_one_success_per_request_file(run_dir, stats)
    assert_every_planned_chunk_once(run_dir)


# -- 6. budget and plan ----------------------------------------------------------------
def test_budget_refuses_with_numbers_and_plan_creates_no_job(corpus, tmp_path):
    budget_out, plan_out = tmp_path / "budget", tmp_path / "plan"
    env = cli_env()
    refused_p = start(*run_args("run", corpus, budget_out, "--set", "max_cost_usd=0.0000001"), env=env)
    planned_p = start(*run_args("plan", corpus, plan_out), env=env)
    refused, planned = refused_p.wait(), planned_p.wait()

    assert refused.returncode == 2, refused.explain()
    plan = read_json(only_run(budget_out) / "plan.json")
    assert plan["tokens_total"] > 0
    assert f"${plan['estimated_cost']['batch_usd']:.8f}" in refused.stderr, refused.stderr
    assert str(plan["tokens_total"]) in refused.stderr and "max_cost_usd" in refused.stderr

    assert planned.returncode == 0, planned.explain()
    printed = json.loads(planned.stdout)
    plan_dir = only_run(plan_out)
    assert printed["tokens_total"] == read_json(plan_dir / "plan.json")["tokens_total"] == plan["tokens_total"]

    for out in (budget_out, plan_out):  # nothing submitted: no ledger record, no batch job
        assert not list(out.glob("runs/*/ledger/*.json"))
        state_dir = out / ".emulator"
        assert not state_dir.exists() or emulator_stats(state_dir)["jobs"] == []
