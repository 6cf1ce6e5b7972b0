"""The submit → wait → collect flow of one embedpipe run, as DAG building blocks.

The shipped DAGs (``dags/``) are made of these; a DAG of your own can be too::

    with DAG("embed_docs", schedule="@daily", params=run_params(CONFIG, OUTPUT),
             render_template_as_native_obj=True, ...):
        submit, wait, collect = submit_wait_collect(wait_timeout=timedelta(hours=48))

Both read the run's settings from ``params`` (so a manual run's conf overrides them) and
need ``render_template_as_native_obj=True`` (lists and dicts stay lists and dicts).
"""
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param

from embedpipe_airflow.operators import EmbedpipeCollectOperator, EmbedpipeSubmitOperator
from embedpipe_airflow.sensors import EmbedpipeRunSensor

LAUNCH_FROM_PARAMS = {"gemini_conn_id": "{{ params.gemini_conn_id }}", "env": "{{ params.env }}"}


def run_params(config: str, output: str, *, gemini_conn_id: str | None = "embedpipe_gemini",
               poll_seconds: float = 600) -> dict[str, Param]:
    """The params every run DAG takes (overridable in a manual run's conf)."""
    return {
        "config": Param(config, type="string", description="run config on the workers"),
        "output": Param(output, type="string", description="run output, local or gs://"),
        "sources": Param([], type="array", description="empty: the config's sources"),
        "overrides": Param([], type="array", description="--set key=value items"),
        "env": Param({}, type="object", description="extra, non-secret environment"),
        "gemini_conn_id": Param(gemini_conn_id, type=["null", "string"],
                                description="connection holding the API key; null: the environment's"),
        "poll_seconds": Param(poll_seconds, type="number", description="between two status passes"),
    }


def submit_wait_collect(
    *, wait_timeout: timedelta, overrides: str = "{{ params.overrides }}"
) -> tuple[EmbedpipeSubmitOperator, EmbedpipeRunSensor, EmbedpipeCollectOperator]:
    """Tasks ``submit`` → ``wait`` (deferrable) → ``collect`` in the current DAG.

    :param wait_timeout: bound on the whole wait (one wave can take up to 24 h).
    :param overrides: template of the ``--set`` items (e.g. to add a budget param).
    """
    submit = EmbedpipeSubmitOperator(
        task_id="submit",
        config="{{ params.config }}",
        output_uri="{{ params.output }}",
        sources="{{ params.sources }}",
        overrides=overrides,
        **LAUNCH_FROM_PARAMS,
    )
    wait = EmbedpipeRunSensor(
        task_id="wait",
        output_uri="{{ params.output }}",
        run_id=submit.output["run_id"],
        poll_interval="{{ params.poll_seconds }}",
        timeout=wait_timeout,
        **LAUNCH_FROM_PARAMS,
    )
    collect = EmbedpipeCollectOperator(
        task_id="collect",
        output_uri="{{ params.output }}",
        run_id=submit.output["run_id"],
        **LAUNCH_FROM_PARAMS,
    )
    submit >> wait >> collect
    return submit, wait, collect
