"""The provider package in-process: registration, exit-code policy, the trigger's
serialized form, the key guard, the shipped DAG files, and a collect over tolerance."""
from __future__ import annotations

import asyncio
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from run_helpers import LOCAL, cli_env, embedpipe

import embedpipe_airflow
from embedpipe_airflow.hooks import CliResult, EmbedpipeHook, raise_for_exit, resolve_executable
from embedpipe_airflow.operators import EmbedpipeCollectOperator, EmbedpipeSubmitOperator
from embedpipe_airflow.sensors import EmbedpipeRunSensor
from embedpipe_airflow.triggers import EmbedpipeRunTrigger

REPO = Path(__file__).resolve().parents[2]


def test_provider_info_is_valid_and_every_listed_module_imports():
    import importlib

    import jsonschema
    from airflow.sdk._shared.module_loading import import_string

    info = embedpipe_airflow.get_provider_info()
    schema = json.loads(Path(importlib.import_module("airflow").__file__).with_name(
        "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    assert info["package-name"] == "embedpipe"  # Airflow requires the distribution's name
    for kind in ("operators", "sensors", "triggers", "hooks"):
        for entry in info[kind]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for conn in info["connection-types"]:
        assert import_string(conn["hook-class-name"]).conn_type == conn["connection-type"]


def result(code: int) -> CliResult:
    return CliResult(("status", "--output", "o"), code, "", "embedpipe: something\n")


def test_exit_codes_map_to_retry_semantics():
    raise_for_exit(result(0))
    for code in (2, 3):  # config/budget; dead letters: a retry cannot help
        with pytest.raises(AirflowFailException):
            raise_for_exit(result(code))
    for code in (75, 1, -9):  # pending, a failure, a kill: retry (ledger-guarded)
        with pytest.raises(AirflowException) as caught:
            raise_for_exit(result(code))
        assert not isinstance(caught.value, AirflowFailException)
    with pytest.raises(AirflowException, match="killed by signal 9"):
        raise_for_exit(result(-9))


def test_executable_resolution():
    assert Path(resolve_executable(None)).name == "embedpipe"
    with pytest.raises(AirflowFailException, match="not an executable"):
        resolve_executable("/nonexistent/embedpipe")


def test_trigger_round_trips_and_names_the_connection_never_the_key():
    trigger = EmbedpipeRunTrigger(
        output="gs://b/out", run_id="r1", poll_interval=30,
        launch={"gemini_conn_id": "embedpipe_gemini",
                "env": {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}},
    )
    classpath, kwargs = trigger.serialize()
    from airflow.sdk._shared.module_loading import import_string

    again = import_string(classpath)(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (classpath, kwargs)
    assert kwargs["launch"]["gemini_conn_id"] == "embedpipe_gemini"
    assert not {"password", "api_key", "key"} & (set(kwargs) | set(kwargs["launch"]))


@pytest.mark.parametrize("variable", ["GEMINI_API_KEY", "GOOGLE_API_KEY", "MY_KEY"])
def test_key_in_extra_env_is_refused(variable):
    with pytest.raises(AirflowFailException, match="never pass the API key through env"):
        EmbedpipeHook(env={variable: "secret"}, api_key_env="MY_KEY")


@pytest.mark.slow
def test_trigger_reports_a_failing_status_with_its_exit_code(tmp_path):
    trigger = EmbedpipeRunTrigger(output=str(tmp_path / "no-such-output"), run_id="nope", poll_interval=0)

    async def first_event():
        async for event in trigger.run():
            return event.payload

    payload = asyncio.run(first_event())
    assert payload["status"] == "failed" and payload["returncode"] == 2, payload
    assert "no-such-output is not a directory with runs" in payload["message"]  # embedpipe's own words


def dags_in(path: Path) -> dict:
    from airflow.sdk import DAG

    return {d.dag_id: d for d in runpy.run_path(str(path)).values() if isinstance(d, DAG)}


def test_shipped_dags_parse_with_the_expected_flow():
    nightly = dags_in(REPO / "dags" / "embedpipe_nightly.py")["embedpipe_nightly"]
    backfill = dags_in(REPO / "dags" / "embedpipe_backfill.py")["embedpipe_backfill"]
    for dag in (nightly, backfill):
        assert dag.task_dict["wait"].upstream_task_ids == {"submit"}
        assert dag.task_dict["collect"].upstream_task_ids == {"submit", "wait"}
        assert isinstance(dag.task_dict["wait"], EmbedpipeRunSensor) and dag.task_dict["wait"].deferrable
        assert dag.task_dict["submit"].retries >= 1 and dag.task_dict["collect"].retries >= 1
    assert nightly.schedule == "@daily" and not nightly.catchup
    assert "max_cost_usd" in backfill.task_dict["submit"].overrides


def test_parsing_the_shipped_dags_does_not_import_beam():
    """The DAG processor re-parses every DAG file every few minutes under a timeout: Beam's
    import (seconds on a small machine) belongs in the task's child process, not the parse."""
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    probe = ("import runpy, sys\n"
             "for path in sys.argv[1:]:\n"
             "    runpy.run_path(path)\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('apache_beam', 'faiss')))\n")
    out = subprocess.run([sys.executable, "-c", probe, *map(str, sorted((REPO / "dags").glob("*.py")))],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_migration_dags_follow_the_migrate_contract():
    dags = dags_in(REPO / "dags" / "embedpipe_migration.py")
    flow = dags["embedpipe_migration"]
    order = ["import_legacy", "plan", "reembed_pilot", "evaluate_pilot", "reembed_all",
             "evaluate_all", "cutover"]
    for upstream, downstream in zip(order, order[1:]):
        assert flow.task_dict[upstream].downstream_task_ids == {downstream}
    commands = {t: flow.task_dict[t].command for t in order}
    assert commands["import_legacy"][:2] == ["migrate", "import"]
    assert {"--config", "--legacy", "--output"} <= set(commands["import_legacy"])
    assert commands["plan"][:2] == ["migrate", "plan"] and "--fraction" in commands["plan"]
    assert commands["reembed_pilot"][:2] == commands["reembed_all"][:2] == ["migrate", "run"]
    assert "--fraction" in commands["reembed_pilot"] and "--fraction" not in commands["reembed_all"]
    for task in ("evaluate_pilot", "evaluate_all"):
        assert commands[task][:2] == ["migrate", "evaluate"] and {"--queries", "-k"} <= set(commands[task])
    assert "'cutover'" in commands["cutover"] and "--force" in commands["cutover"]
    rollback = dags["embedpipe_migration_rollback"].task_dict["rollback"].command
    assert rollback[:2] == ["migrate", "rollback"] and "--output" in rollback


class RecordingTaskInstance:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


@pytest.mark.slow
def test_collect_over_deadletter_tolerance_fails_without_retry_and_names_the_numbers(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "notes.txt").write_text("glacier moraine fjord " * 50)
    (corpus / "photo.png").write_text("text named like an image")  # a dead letter
    output = str(tmp_path / "out")
    submitted = embedpipe("submit", "--config", LOCAL, "--sources", str(corpus), "--output", output,
                          "--set", "index.enabled=false", env=cli_env())
    assert submitted.returncode == 0, submitted.explain()
    run_id = submitted.stdout.split()[-1]
    collect = EmbedpipeCollectOperator(task_id="collect", output_uri=output, run_id=run_id)
    ti = RecordingTaskInstance()
    with pytest.raises(AirflowFailException) as failed:
        collect.execute({"ti": ti})
    message = str(failed.value)
    assert "deadletter_tolerance=0.0" in message
    assert "1 dead object(s) and 0 dead chunk(s) among 2 listed object(s)" in message
    assert f"embedpipe redrive --output {output} --run {run_id}" in message
    counts = ti.pushed["manifest"]["counts"]
    assert counts["dead_objects"] == 1 and counts["embedded_rows"] == counts["chunks"] >= 1


@pytest.mark.slow
def test_operators_read_the_run_where_their_child_wrote_it(tmp_path):
    """A relative output resolves from ``cwd`` in the child; the plan and manifest the
    operators return must be read from there too, not from the task process's directory."""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "notes.txt").write_text("glacier moraine fjord " * 50)
    launch = {"cwd": str(tmp_path)}
    submit = EmbedpipeSubmitOperator(task_id="submit", config=LOCAL, output_uri="out", sources=["corpus"],
                                     overrides=["index.enabled=false"], **launch)
    ti = RecordingTaskInstance()
    submitted = submit.execute({"ti": ti})
    assert submitted["objects"]["listed"] == 1 and submitted["request_files"] == 1
    assert Path(tmp_path, "out", "runs", ti.pushed["run_id"], "plan.json").is_file()
    collected = EmbedpipeCollectOperator(task_id="collect", output_uri="out", run_id=ti.pushed["run_id"],
                                         **launch).execute({"ti": ti})
    assert collected["counts"]["embedded_rows"] == collected["counts"]["chunks"] >= 1
    assert collected["tokens"]["billed"] == submitted["tokens_planned"] > 0
