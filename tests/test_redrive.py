"""``embedpipe redrive`` resubmits only what may succeed now.

A permanent per-line error (INVALID_ARGUMENT: the request itself is wrong) must stay a
dead letter: sending it again can only fail again and costs a job. A retryable one
(UNAVAILABLE) is resubmitted once its cause is gone. The emulator's books say which keys
each job carried.
"""
from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.emulator import FaultConfig
from pipeline.redrive import may_succeed_now
from run_helpers import (
    cli_env,
    deadletters,
    embeddings,
    embedpipe,
    gemini_args,
    job_input_keys,
    ledger,
    only_run,
    planned_keys,
    run_args,
    standalone_emulator,
)


@pytest.mark.parametrize("dead, redrive", [
    ({"stage": "collect", "error_class": "api_error_14"}, True),  # UNAVAILABLE
    ({"stage": "collect", "error_class": "api_error_13"}, True),  # INTERNAL
    ({"stage": "collect", "error_class": "api_error_429"}, True),
    ({"stage": "collect", "error_class": "missing_result"}, True),
    ({"stage": "collect", "error_class": "api_error_3"}, False),  # INVALID_ARGUMENT
    ({"stage": "collect", "error_class": "api_error_400"}, False),
    ({"stage": "collect", "error_class": "wrong_dimensionality"}, False),
    ({"stage": "collect", "error_class": "invalid_vector"}, False),
    ({"stage": "chunk", "error_class": "corrupt_media"}, False),  # fix the input instead
])
def test_which_dead_letters_may_succeed_now(dead, redrive):
    assert may_succeed_now(dead) is redrive


@pytest.mark.slow
def test_redrive_resubmits_the_retryable_key_and_never_the_permanent_one(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"note-{i:02d}.txt").write_text(f"Note {i} about migrating birds number {i}.\n")
    plan_out = tmp_path / "plan"
    assert main(list(run_args("plan", corpus, plan_out))) == 0  # in-process: only the ids are needed
    permanent, retryable = sorted(planned_keys(only_run(plan_out)))[:2]  # ids do not depend on --output

    out, state_dir = tmp_path / "out", tmp_path / "emulator"
    faults = FaultConfig(line_error_codes={permanent: 3, retryable: 14})
    with standalone_emulator(state_dir, faults=faults) as (server, url, key):
        env = cli_env(api_key=key)
        first = embedpipe(*run_args("run", corpus, out, *gemini_args(url)), env=env)
        assert first.returncode == 3, first.explain()
        run_dir = only_run(out)
        dead = {d["chunk_id"]: d for d in deadletters(run_dir, "collect*.jsonl")}
        assert set(dead) == {permanent, retryable}
        assert dead[permanent]["error_class"] == "api_error_3"
        assert dead[retryable]["error_class"] == "api_error_14" and dead[retryable]["attempts"] == 3
        jobs_before = len(server.stats()["jobs"])
        sent = [k for j in server.stats()["jobs"] for k in job_input_keys(state_dir, j)]
        assert (sent.count(permanent), sent.count(retryable)) == (1, 3)  # no follow-up for a 400

        server.faults.update({"line_error_codes": {}})  # the cause is gone
        again = embedpipe("redrive", "--output", str(out), env=env)
        stats = server.stats()

    assert "1 dead-lettered chunk(s) resubmitted" in again.stderr, again.explain()
    assert again.returncode == 3, again.explain()  # the permanent one is still a dead letter
    new_jobs = stats["jobs"][jobs_before:]
    assert len(new_jobs) == 1 and job_input_keys(state_dir, new_jobs[0]) == [retryable]
    sent = [k for j in stats["jobs"] for k in job_input_keys(state_dir, j)]
    assert sent.count(permanent) == 1, "the permanent key was sent again"
    assert [d["chunk_id"] for d in deadletters(run_dir, "collect*.jsonl")] == [permanent]
    ids = embeddings(run_dir).column("chunk_id").to_pylist()
    assert retryable in ids and permanent not in ids and len(ids) == len(set(ids))
    assert any(name.endswith("-r3") for name in ledger(run_dir))
