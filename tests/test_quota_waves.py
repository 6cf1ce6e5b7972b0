"""Waves: the pipeline never enqueues past the enqueued-token quota or the job cap.

The emulator here does NOT enforce a quota (a 429 + retry would hide a client that
ignores it); instead it audits every create (what was already enqueued, by its own token
count, and how many jobs were active) and holds every job until the test releases it,
so each wave stays enqueued as long as the test wants, whatever the machine's speed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.emulator import FaultConfig
from run_helpers import (
    assert_created_within_quota,
    assert_every_planned_chunk_once,
    assert_one_success_per_request_file,
    cli_env,
    drive_held_jobs,
    embedpipe,
    gemini_args,
    jobs_by_request,
    only_run,
    read_json,
    request_files,
    run_args,
    standalone_emulator,
    write_sample_corpus,
)

pytestmark = pytest.mark.slow

HOLD = FaultConfig(hold_jobs="RUNNING")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_sample_corpus(tmp_path_factory.mktemp("waves"))


@pytest.mark.parametrize("limit, binding", [
    (("--set", "quota.enqueued_tokens=6000"), "tokens"),
    (("--set", "quota.enqueued_tokens=500000", "--set", "quota.max_concurrent_jobs=4"), "jobs"),
])
def test_each_wave_fits_the_quota_and_the_job_cap_at_every_create(corpus, tmp_path, limit, binding):
    out = tmp_path / "out"
    with standalone_emulator(tmp_path / "emulator", faults=HOLD) as (server, url, key):
        env = cli_env(api_key=key)
        submit = embedpipe(*run_args("submit", corpus, out, *gemini_args(url), *limit), env=env)
        assert submit.returncode == 0, submit.explain()
        run_dir = only_run(out)
        plan = read_json(run_dir / "plan.json")
        first_wave = jobs_by_request(server.stats(), run_dir.name)
        assert plan["waves"] > 1, "the corpus must need several waves under this limit"
        # `submit` created exactly the plan's first wave, each create within the limits
        assert sorted(first_wave) == sorted(plan["wave_files"][0])
        if binding == "jobs":
            assert len(first_wave) == 4
        else:
            assert sum(j["estimated_tokens"] for js in first_wave.values() for j in js) <= 6000
        assert_created_within_quota(run_dir, server.stats())

        # while the wave is held, another pass creates nothing more
        again = embedpipe("status", "--output", str(out), env=env)
        assert again.returncode == 75, again.explain()
        assert len(server.stats()["jobs"]) == len(first_wave)

        polls = drive_held_jobs(server, out, env)
        assert json.loads(polls[-1].stdout)["pending"] is False
        collect = embedpipe("collect", "--output", str(out), env=env)
        assert collect.returncode == 0, collect.explain()
        stats = server.stats()

    assert len(stats["jobs"]) == len(request_files(run_dir))
    assert_one_success_per_request_file(run_dir, stats)  # includes the audit of every create
    assert max(j["enqueued_jobs_at_create"] for j in stats["jobs"]) >= 1  # waves did overlap
    assert_every_planned_chunk_once(run_dir)
