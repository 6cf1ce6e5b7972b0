"""Money: for every command sequence a user or a scheduler might run (run, plan, submit,
status, collect, redrive; with and without a budget; after exit 0, 2 and 3), the tokens
the service billed never exceed what was approved, a refused or plan-only run is never
submitted, and a rerun with nothing changed bills zero.

The judge is the emulator's own books (jobs it created, tokens it billed), read from its
state directory after the commands ended — not the manifest the code under test wrote.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from run_helpers import (
    cli_env,
    emulator_stats,
    embedpipe,
    only_run,
    read_json,
    run_args,
    run_dirs,
    wait_then_collect,
)

pytestmark = pytest.mark.slow

TINY_BUDGET = ("--set", "max_cost_usd=0.000000001")
WORDS = "river stone cloud maple harbor lantern meadow copper falcon willow".split()


@pytest.fixture()
def corpus(tmp_path) -> Path:
    """Twelve small documents: several request files (8 lines each) and waves (FAST)."""
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(12):
        words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(60)]
        (root / f"doc{i:02d}.txt").write_text(f"Document {i}. " + " ".join(words))
    return root


def books(out: Path) -> dict:
    """What the (embedded) emulator created and billed for this output, all runs."""
    state = out / ".emulator"
    if not state.exists():
        return {"jobs_created": 0, "billed_tokens": 0}
    return emulator_stats(state)


def approved_tokens(out: Path) -> int:
    """Tokens of every plan recorded as approved under ``out``."""
    total = 0
    for run in run_dirs(out):
        state = read_json(run / "run.json")
        if (state.get("approval") or {}).get("state") == "approved":
            total += state["approval"]["tokens"]
    return total


def test_a_refused_run_is_never_submitted_by_any_later_command(corpus, tmp_path):
    out, env = tmp_path / "out", cli_env()
    refused = embedpipe(*run_args("run", corpus, out), *TINY_BUDGET, env=env)
    assert refused.returncode == 2 and "exceeds max_cost_usd" in refused.stderr
    run_id = only_run(out).name
    assert read_json(only_run(out) / "run.json")["approval"]["state"] == "refused"
    for args in (("status", "--output", str(out)),
                 ("status", "--output", str(out), "--run", run_id),
                 ("collect", "--output", str(out), "--run", run_id),
                 ("redrive", "--output", str(out), "--run", run_id),
                 ("collect", "--output", str(out), "--run", run_id, "--set", "max_cost_usd=null")):
        res = embedpipe(*args, env=env)
        assert res.returncode == 2, res.explain()
        assert "never advanced" in res.stderr or "nothing of it is submitted" in res.stderr
    assert books(out)["jobs_created"] == 0 and books(out)["billed_tokens"] == 0
    assert not list(out.glob("runs/*/ledger/*.json"))


def test_plans_are_never_advanced_and_check_refuses_over_budget(corpus, tmp_path):
    out, env = tmp_path / "out", cli_env()
    plan = embedpipe(*run_args("plan", corpus, out), *TINY_BUDGET, env=env)
    assert plan.returncode == 0 and "would refuse this plan" in plan.stderr
    checked = embedpipe(*run_args("plan", corpus, out), *TINY_BUDGET, "--check", env=env)
    assert checked.returncode == 2 and "exceeds max_cost_usd" in checked.stderr
    within = embedpipe(*run_args("plan", corpus, out), "--check", env=env)
    assert within.returncode == 0, within.explain()
    newest = run_dirs(out)[-1].name
    for args in (("status", "--output", str(out)), ("collect", "--output", str(out)),
                 ("redrive", "--output", str(out)), ("status", "--output", str(out), "--run", newest)):
        res = embedpipe(*args, env=env)
        assert res.returncode == 2, res.explain()
    assert "was made by `embedpipe plan`" in res.stderr
    assert books(out)["jobs_created"] == 0 and approved_tokens(out) == 0


def test_a_lower_budget_on_a_later_command_stops_the_spending(corpus, tmp_path):
    out, env = tmp_path / "out", cli_env()
    waves = ("--set", "quota.enqueued_tokens=700")  # ~1,600 tokens in 3 files: several waves
    submitted = embedpipe(*run_args("submit", corpus, out), *waves, env=env)
    assert submitted.returncode == 0, submitted.explain()
    plan = read_json(only_run(out) / "plan.json")
    assert plan["waves"] > 1, "the test needs later waves still to submit"
    first_wave = books(out)["jobs_created"]
    for command in ("status", "collect"):
        res = embedpipe(command, "--output", str(out), *TINY_BUDGET, env=env)
        assert res.returncode == 2 and "exceeds max_cost_usd" in res.stderr, res.explain()
    assert books(out)["jobs_created"] == first_wave
    polls, collect = wait_then_collect(out, env)
    assert collect.returncode == 0, collect.explain()
    assert books(out)["billed_tokens"] <= approved_tokens(out) == plan["tokens_total"]


def test_after_exit_0_2_and_3_reruns_bill_only_what_changed(corpus, tmp_path):
    out, env = tmp_path / "out", cli_env()
    (corpus / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a dead letter
    first = embedpipe(*run_args("run", corpus, out), env=env)
    assert first.returncode == 3, first.explain()
    assert "exceed deadletter_tolerance=0.00%" in first.stderr
    assert str(only_run(out) / "deadletters") in first.stderr
    assert read_json(out / "current.json")["run_id"] == only_run(out).name  # exit 3 is current
    billed = books(out)["billed_tokens"]
    assert 0 < billed <= approved_tokens(out)

    again = embedpipe(*run_args("run", corpus, out), env=env)  # nothing changed
    assert again.returncode == 3, again.explain()
    summary = json.loads(again.stdout)
    assert summary["tokens"]["billed"] == 0 and summary["carried_from_previous_run"] == len(
        list(corpus.glob("*.txt")))
    assert books(out)["billed_tokens"] == billed

    refused = embedpipe(*run_args("run", corpus, out), *TINY_BUDGET, env=env)  # exit 2: free
    assert refused.returncode in (0, 3), refused.explain()  # nothing changed: a $0 plan fits
    (corpus / "doc00.txt").write_text("A brand new text about lighthouses and foghorns.")
    refused = embedpipe(*run_args("run", corpus, out), *TINY_BUDGET, env=env)
    assert refused.returncode == 2, refused.explain()
    assert books(out)["billed_tokens"] == billed

    (corpus / "broken.png").unlink()
    fixed = embedpipe(*run_args("run", corpus, out), env=env)
    assert fixed.returncode == 0, fixed.explain()
    changed = json.loads(fixed.stdout)["tokens"]["billed"]
    assert 0 < changed < billed  # one changed document, not the corpus
    assert books(out)["billed_tokens"] == billed + changed <= approved_tokens(out)

    redrive = embedpipe("redrive", "--output", str(out), env=env)
    assert redrive.returncode == 0 and "0 dead-lettered chunk(s) resubmitted" in redrive.stderr
    assert books(out)["billed_tokens"] == billed + changed
