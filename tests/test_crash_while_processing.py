"""``kill -9`` while the in-process emulator is processing a job, then a plain rerun.

Why this exists: ``test_exactly_once.py::test_kill_9_then_rerun_pays_once_and_loses_nothing
[created]`` errored on a loaded machine, its rerun stuck at "collected 2, running 1" until
the fixture's timeout. The pipeline was not at fault: its rerun found the job by display
name and polled it. The job itself never ended: ``embedpipe run`` hosts the emulator,
whose worker thread processes a job right after its create, and the crash point
``created`` kills the process at that moment. The worker wrote the output, deleted the job's
input snapshot and only then recorded the job as processed, so a kill between the last
two steps left a job that the next emulator life could neither finish (no input) nor
end (not processed): RUNNING forever. A real service keeps its jobs; the emulator now
records the job as processed before deleting anything, so whatever step the kill hits,
the next life finishes the job.

The crash points here (``EMBEDPIPE_CRASH_AT=emulator-output-written`` / ``emulator-job-saved``)
make the once-in-a-while timing deterministic.
"""
from __future__ import annotations

import pytest

from pipeline.emulator import EmulatorServer
from run_helpers import (
    assert_every_planned_chunk_once,
    assert_one_success_per_request_file,
    cli_env,
    embedpipe,
    emulator_stats,
    killed_by_sigkill,
    only_run,
    read_json,
    run_args,
    token_sum,
    write_sample_corpus,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_sample_corpus(tmp_path_factory.mktemp("processing"))


@pytest.mark.parametrize("point", ["emulator-output-written", "emulator-job-saved"])
def test_kill_9_while_the_emulator_processes_a_job_then_rerun_pays_once(point, corpus, tmp_path):
    out = tmp_path / "out"
    crashed = embedpipe(*run_args("run", corpus, out), env=cli_env(crash_at=point))
    assert killed_by_sigkill(crashed.returncode), crashed.explain()
    state_dir = out / ".emulator"
    created = emulator_stats(state_dir)["jobs"]
    blobs = {p.name for p in (state_dir / "blobs").iterdir()}
    # The job the kill hit: output written and input still there; recorded as processed
    # (SUCCEEDED) only at the later point. Others may be anywhere in their life.
    expected = "RUNNING" if point == "emulator-output-written" else "SUCCEEDED"
    hit = [j for j in created if {f"batch-{j['name'][8:]}", f"input-{j['name'][8:]}"} <= blobs]
    assert len(hit) == 1 and hit[0]["state"] == expected, (created, sorted(blobs))

    # The emulator alone, on what the dead process left: every job finishes, none hangs.
    with EmulatorServer(state_dir=str(state_dir)) as server:
        assert server.wait_idle()
        states = {j["name"]: j["state"] for j in server.stats()["jobs"]}
    assert states == {j["name"]: "SUCCEEDED" for j in created}
    assert not list((state_dir / "blobs").glob("input-*"))  # nothing left behind

    rerun = embedpipe(*run_args("run", corpus, out), env=cli_env())
    assert rerun.returncode == 0, rerun.explain()
    assert "resuming unfinished run" in rerun.stderr
    run_dir = only_run(out)
    stats = emulator_stats(state_dir)
    assert_one_success_per_request_file(run_dir, stats)
    table = assert_every_planned_chunk_once(run_dir)
    manifest = read_json(run_dir / "manifest.json")
    assert stats["billed_tokens"] == token_sum(table) == manifest["tokens"]["planned"]
