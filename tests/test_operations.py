"""What a scheduler needs: per-phase wall times and counts in the manifest (also across
split-mode processes), ``status --json``, and a JSON log mode that never shows the key."""
from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time

import pytest

from pipeline import logs
from run_helpers import (
    LOCAL,
    cli_env,
    embedpipe,
    gemini_args,
    ledger,
    only_run,
    read_json,
    standalone_emulator,
)

PHASES = ["list", "chunk", "plan", "submit", "wait", "collect", "write", "index"]
QUICK = ("--set", "gemini.poll_interval_s=0.05", "--set", "gemini.max_poll_interval_s=0.2",
         "--set", "requests.max_lines_per_file=4")


def _t(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops") / "docs"
    root.mkdir()
    rng = random.Random(11)
    words = ["estuary", "salt", "marsh", "heron", "tide", "reed", "mud", "crab", "dune", "gull"]
    for i in range(10):
        (root / f"note-{i}.txt").write_text(" ".join(rng.choice(words) for _ in range(80)) + "\n")
    return root


def _check_phase_records(manifest: dict, run_state: dict) -> dict:
    phases = manifest["phases"]
    assert set(phases) == set(PHASES)
    for name, rec in phases.items():
        assert _t(rec["started_at"]) <= _t(rec["ended_at"]), name
        assert rec["seconds"] >= 0 and rec["passes"] >= 1, name
        assert _t(run_state["created_at"]) - 1 <= _t(rec["started_at"]), name
        assert _t(rec["ended_at"]) <= _t(manifest["finished_at"]) + 1, name
    # pipeline order: each stage starts no earlier than the one before it
    starts = [_t(phases[n]["started_at"]) for n in ("list", "chunk", "plan", "write", "index")]
    assert starts == sorted(starts)
    assert _t(phases["plan"]["ended_at"]) <= _t(phases["submit"]["ended_at"])
    c = manifest["counts"]
    counts = {n: r["counts"] for n, r in phases.items()}
    assert counts["list"]["objects"] == c["listed"] == 10
    assert counts["chunk"]["chunks"] == c["chunks"]
    assert counts["write"]["rows"] == c["embedded_rows"] == c["chunks"]
    assert counts["index"] == {"built": True, "vectors": c["chunks"]}
    assert counts["submit"]["jobs_created"] == len(manifest["jobs"]["names"])
    return phases


def test_one_shot_run_charts_every_phase(docs, tmp_path):
    res = embedpipe("run", "--config", LOCAL, "--sources", str(docs), "--output", str(tmp_path / "out"),
                    *QUICK, env=cli_env())
    assert res.returncode == 0, res.explain()
    run_dir = only_run(tmp_path / "out")
    manifest = read_json(run_dir / "manifest.json")
    phases = _check_phase_records(manifest, read_json(run_dir / "run.json"))
    plan = read_json(run_dir / "plan.json")
    assert phases["plan"]["counts"]["request_files"] == plan["request_files"] > 1
    assert phases["plan"]["counts"]["tokens"] == plan["tokens_total"]
    assert phases["collect"]["counts"]["result_files"] == len(ledger(run_dir))
    assert manifest["engines"]["prepare"] == {"runner": "FnApiRunner", "engine": "FnApiRunner"}


def test_split_mode_accumulates_phases_and_status_json_reports_progress(docs, tmp_path):
    out = tmp_path / "out"
    with standalone_emulator(tmp_path / "emulator", running_seconds=15) as (server, url, key):
        env = cli_env(api_key=key)
        submit = embedpipe("submit", "--config", LOCAL, "--sources", str(docs), "--output", str(out),
                           *QUICK, *gemini_args(url), env=env)
        assert submit.returncode == 0, submit.explain()
        first = embedpipe("status", "--output", str(out), "--json", env=env)
        assert first.returncode == 75, first.explain()
        pending = json.loads(first.stdout)
        plain = embedpipe("status", "--output", str(out), env=env)
        assert set(json.loads(plain.stdout)) == {"run_id", "jobs", "pending"}  # unchanged contract
        polls = [first, plain]
        while polls[-1].returncode == 75:
            time.sleep(0.5)
            polls.append(embedpipe("status", "--output", str(out), env=env))
        done = embedpipe("status", "--output", str(out), "--json", env=env)
        collect = embedpipe("collect", "--output", str(out), env=env)
        assert collect.returncode == 0, collect.explain()

    run_dir = only_run(out)
    plan = read_json(run_dir / "plan.json")
    assert pending["schema"] == "embedpipe.status/1" and pending["pending"] is True
    assert pending["run_id"] == run_dir.name and pending["approval"]["state"] == "approved"
    assert pending["tokens"]["planned"] == plan["tokens_total"] == pending["tokens"]["submitted"]
    assert pending["tokens"]["billed_so_far"] == 0
    assert sum(pending["jobs"].values()) == pending["request_files"]["total"] == plan["request_files"]
    assert {"list", "chunk", "plan", "submit", "wait"} <= set(pending["phases"])

    final = json.loads(done.stdout)
    assert final["pending"] is False and final["jobs"] == {"COLLECTED": plan["request_files"]}
    manifest = read_json(run_dir / "manifest.json")
    assert final["tokens"]["billed_so_far"] == manifest["tokens"]["billed"] == plan["tokens_total"]

    phases = _check_phase_records(manifest, read_json(run_dir / "run.json"))
    # the wait spans the status calls (several processes), not one process's polling
    assert phases["wait"]["passes"] >= len(polls) + 1
    assert _t(phases["wait"]["ended_at"]) - _t(phases["wait"]["started_at"]) >= 10
    assert phases["wait"]["seconds"] < _t(phases["wait"]["ended_at"]) - _t(phases["wait"]["started_at"])


def test_json_logs_are_one_object_per_line_and_never_show_the_key(docs, tmp_path):
    out = tmp_path / "out"
    with standalone_emulator(tmp_path / "emulator") as (server, url, key):
        env = {**cli_env(api_key=key), "EMBEDPIPE_LOG_FORMAT": "json"}
        run = embedpipe("--log-format", "json", "-v", "run", "--sources", str(docs), "--output", str(out),
                        *QUICK, *gemini_args(url), env=env)
        status = embedpipe("status", "--output", str(out), env=env)  # the mode from the environment
        bad = embedpipe("run", "--log-format", "json", "--sources", str(docs), "--output", str(out),
                        "--set", "dimensionality=5", env=env)
    assert run.returncode == 0, run.explain()
    assert status.returncode == 0 and bad.returncode == 2
    records = []
    for res in (run, status, bad):
        assert key not in res.stdout and key not in res.stderr
        for line in res.stderr.splitlines():
            if line.strip():
                record = json.loads(line)  # every line is one JSON object
                assert {"ts", "level", "logger", "message"} <= set(record), record
                records.append(record)
    messages = [(r["level"], r["message"]) for r in records]
    assert any(lvl == "WARNING" and "no --config given" in m for lvl, m in messages)
    assert any(lvl == "INFO" and "engine: FnApiRunner" in m for lvl, m in messages)
    assert any(r["logger"].startswith("apache_beam") for r in records)  # -v: Beam's own log too
    assert any(lvl == "ERROR" and m.startswith("embedpipe: dimensionality") for lvl, m in messages)
    assert json.loads(status.stdout)["pending"] is False  # stdout stays the plain result


def test_a_registered_secret_is_redacted_from_log_records():
    secret = "sk-live-Zq8vT3mN0pL5rX2wY7kB"
    logs.register_secret(secret)
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "calling with %s", (secret,), None)
    assert secret not in logs.JsonFormatter().format(record)
    assert "[redacted]" in json.loads(logs.JsonFormatter().format(record))["message"]
    assert logs.redact("key=AIza" + "A" * 35) == "key=[redacted]"
