"""Operators for embedpipe's split mode: submit a run, (wait: see ``sensors``), collect it.

Each returns a small JSON summary as its XCom (run id, plan or manifest counts); the
run's files stay the source of truth (``<output>/runs/<run_id>/plan.json``,
``manifest.json``). Retrying any of them is safe: ``submit`` resumes the unfinished run
of the same config and sources, ``collect`` re-collects a run that is not done, and the
ledger guarantees that no request file is ever paid for twice.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from embedpipe_airflow.hooks import CliResult, EmbedpipeHook, raise_for_exit
from pipeline.cli import EXIT_DEADLETTERS
from pipeline.run_layout import RunPaths

LAUNCH_FIELDS = ("gemini_conn_id", "env")


class EmbedpipeLaunchMixin:
    """Where the child process runs and where its key comes from (see ``EmbedpipeHook``)."""

    def _set_launch(self, gemini_conn_id, api_key_env, embedpipe_bin, env, cwd) -> None:
        self.gemini_conn_id = gemini_conn_id
        self.api_key_env = api_key_env
        self.embedpipe_bin = embedpipe_bin
        self.env = env or {}
        self.cwd = cwd
        self._hook: EmbedpipeHook | None = None

    def launch_kwargs(self) -> dict[str, Any]:
        return {
            "gemini_conn_id": self.gemini_conn_id, "api_key_env": self.api_key_env,
            "embedpipe_bin": self.embedpipe_bin, "env": self.env, "cwd": self.cwd,
        }

    def run_cli(self, args) -> CliResult:
        self._hook = EmbedpipeHook(**self.launch_kwargs())
        try:
            return self._hook.run(args)
        finally:
            self._hook = None

    def read_run_files(self, *uris: str) -> list:
        """Read a run's JSON files where the child wrote them (``EmbedpipeHook.read_run_files``)."""
        return EmbedpipeHook(**self.launch_kwargs()).read_run_files(*uris)

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.terminate()


def run_args(config: str | None, output: str, sources, overrides, beam_args) -> list[str]:
    """The options ``run``/``plan``/``submit`` share (see ``embedpipe submit --help``)."""
    args = ["--output", output]
    if config:
        args += ["--config", config]
    if sources:
        args += ["--sources", *sources]
    for item in overrides or ():
        args += ["--set", item]
    return args + list(beam_args or ())


def plan_summary(run_id: str, output: str, plan: dict) -> dict:
    return {
        "run_id": run_id,
        "output": output,
        "objects": plan["objects"],
        "request_files": plan["request_files"],
        "waves": plan["waves"],
        "tokens_planned": plan["tokens_total"],
        "tokens_by_modality": plan["tokens_by_modality"],
        "estimated_cost": plan["estimated_cost"],
    }


def manifest_summary(paths: RunPaths, manifest: dict) -> dict:
    jobs = manifest["jobs"]
    return {
        "run_id": paths.run_id,
        "output": paths.output,
        "manifest": paths.manifest,
        "counts": manifest["counts"],
        "tokens": manifest["tokens"],
        "cost": manifest["cost"],
        "jobs": {
            "batch_jobs": len(jobs["names"]),
            "request_files_by_state": jobs["request_files_by_state"],
            "resubmitted_jobs": jobs["resubmitted_jobs"],
            "followup_files": jobs["followup_files"],
        },
        "previous_run": manifest.get("previous_run"),
    }


class EmbedpipeSubmitOperator(EmbedpipeLaunchMixin, BaseOperator):
    """``embedpipe submit``: list, chunk, write request files (Beam; on Dataflow with a
    Dataflow config), check the budget, submit the first wave of batch jobs, exit.

    Returns the plan's numbers (``run_id``, ``objects``, ``request_files``, ``waves``,
    ``tokens_planned``, ``estimated_cost``) and pushes ``run_id`` under its own XCom key,
    so ``wait``/``collect`` can take ``submit.output["run_id"]``. A plan over
    ``max_cost_usd`` fails the task at once (exit 2, no retry). A run with nothing changed
    since the last one has zero request files and submits nothing.

    :param config: the run config (YAML) on the launching worker.
    :param output_uri: the run output (local path or ``gs://``), passed as ``--output``
        (it overrides the config's): wait and collect find the run under it.
    :param sources: override the config's sources (``None``: the config's).
    :param overrides: ``key=value`` items passed as ``--set`` (e.g. ``max_cost_usd=50``).
    :param beam_args: extra Beam pipeline options (``--project=...``).
    """

    template_fields: Sequence[str] = ("config", "output_uri", "sources", "overrides", "beam_args", *LAUNCH_FIELDS)
    ui_color = "#d6e4f0"

    def __init__(
        self,
        *,
        config: str | None,
        output_uri: str,
        sources: list[str] | None = None,
        overrides: list[str] | None = None,
        beam_args: list[str] | None = None,
        gemini_conn_id: str | None = None,
        api_key_env: str = "GEMINI_API_KEY",
        embedpipe_bin: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.config = config
        self.output_uri = output_uri
        self.sources = sources
        self.overrides = overrides
        self.beam_args = beam_args
        self._set_launch(gemini_conn_id, api_key_env, embedpipe_bin, env, cwd)

    def execute(self, context) -> dict:
        result = self.run_cli(
            ["submit", *run_args(self.config, self.output_uri, self.sources, self.overrides, self.beam_args)]
        )
        raise_for_exit(result)
        run_id = result.last_line()
        (plan,) = self.read_run_files(RunPaths(self.output_uri, run_id).plan)
        summary = plan_summary(run_id, self.output_uri, plan)
        self.log.info(
            "run %s: %d request file(s), %d token(s) planned, estimated batch cost $%.4f",
            run_id, summary["request_files"], summary["tokens_planned"],
            summary["estimated_cost"]["batch_usd"],
        )
        context["ti"].xcom_push(key="run_id", value=run_id)
        return summary


class EmbedpipeCollectOperator(EmbedpipeLaunchMixin, BaseOperator):
    """``embedpipe collect``: collect ended jobs, write the embeddings (Beam), build the
    index, write the manifest. Returns the manifest's counts, tokens and cost.

    Exit 75 (jobs still pending) fails retryably. Dead letters over the run's
    ``deadletter_tolerance`` (exit 3) fail the task without retry, with the numbers; the
    manifest is written all the same and its summary is pushed under the XCom key
    ``manifest``.
    """

    template_fields: Sequence[str] = ("output_uri", "run_id", *LAUNCH_FIELDS)
    ui_color = "#d6f0dc"

    def __init__(
        self,
        *,
        output_uri: str,
        run_id: str,
        gemini_conn_id: str | None = None,
        api_key_env: str = "GEMINI_API_KEY",
        embedpipe_bin: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_uri = output_uri
        self.run_id = run_id
        self._set_launch(gemini_conn_id, api_key_env, embedpipe_bin, env, cwd)

    def execute(self, context) -> dict:
        result = self.run_cli(["collect", "--output", self.output_uri, "--run", self.run_id])
        paths = RunPaths(self.output_uri, self.run_id)
        if result.returncode == EXIT_DEADLETTERS:
            manifest, run_state = self.read_run_files(paths.manifest, paths.run_state)
            summary = manifest_summary(paths, manifest)
            context["ti"].xcom_push(key="manifest", value=summary)
            raise AirflowFailException(
                deadletter_message(paths, summary, run_state["config"]["deadletter_tolerance"]))
        raise_for_exit(result)
        (manifest,) = self.read_run_files(paths.manifest)
        summary = manifest_summary(paths, manifest)
        self.log.info(
            "run %s: %d row(s) embedded, %d carried, %d token(s) billed",
            self.run_id, summary["counts"]["embedded_rows"], summary["counts"]["carried_rows"],
            summary["tokens"]["billed"],
        )
        return summary


def deadletter_message(paths: RunPaths, summary: dict, tolerance: float) -> str:
    counts = summary["counts"]
    return (
        f"run {paths.run_id}: dead letters exceed deadletter_tolerance={tolerance}: "
        f"{counts['dead_objects']} dead object(s) and {counts['dead_chunks']} dead chunk(s) "
        f"among {counts['listed']} listed object(s) ({counts['chunks']} chunk(s), "
        f"{counts['embedded_rows']} embedded). Reasons: {paths.deadletters}/. "
        f"`embedpipe redrive --output {paths.output} --run {paths.run_id}` resubmits the "
        "dead letters that can succeed now; or raise deadletter_tolerance."
    )


class EmbedpipeCommandOperator(EmbedpipeLaunchMixin, BaseOperator):
    """Any other ``embedpipe`` subcommand (``plan``, ``index``, ``redrive``, ``migrate ...``)
    with the same key handling and exit-code semantics. Returns the command's JSON stdout,
    or its stdout text when that is not JSON.

    :param command: the subcommand and its arguments, e.g.
        ``["migrate", "plan", "--output", "gs://b/out", "--fraction", "0.1"]``.
    """

    template_fields: Sequence[str] = ("command", *LAUNCH_FIELDS)
    ui_color = "#ece6f5"

    def __init__(
        self,
        *,
        command: list[str],
        gemini_conn_id: str | None = None,
        api_key_env: str = "GEMINI_API_KEY",
        embedpipe_bin: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.command = command
        self._set_launch(gemini_conn_id, api_key_env, embedpipe_bin, env, cwd)

    def execute(self, context) -> Any:
        result = self.run_cli(self.command)
        raise_for_exit(result)
        try:
            return json.loads(result.stdout)
        except ValueError:
            return result.stdout.strip()[-4000:]
