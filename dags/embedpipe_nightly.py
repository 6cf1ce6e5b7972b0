"""Nightly incremental re-embedding of a corpus.

submit → wait (deferrable) → collect, once a day. Each run diffs its listing against the
last successful run under the same output: only new or changed objects are chunked and
paid for, unchanged objects' rows are carried over, deleted ones become tombstones. A night
with nothing changed plans zero request files, submits no batch job, does not defer, and
collect just carries the rows forward.

Edit CONFIG and OUTPUT (or pass them in the run's conf); the launching worker and the
triggerer need ``embedpipe[airflow]`` installed and the Gemini API key in the connection
GEMINI_CONN_ID (its password), or in their environment with ``gemini_conn_id: null``.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from embedpipe_airflow.operators import EmbedpipeCollectOperator, EmbedpipeSubmitOperator
from embedpipe_airflow.sensors import EmbedpipeRunSensor

CONFIG = "/opt/embedpipe/configs/dataflow.yaml"
OUTPUT = "gs://YOUR_BUCKET/embedpipe"
GEMINI_CONN_ID = "embedpipe_gemini"

LAUNCH = {
    "gemini_conn_id": "{{ params.gemini_conn_id }}",
    "env": "{{ params.env }}",
}

with DAG(
    dag_id="embedpipe_nightly",
    description="Re-embed what changed in the corpus since the last run",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # runs of one output are sequential: each diffs against the last
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "config": Param(CONFIG, type="string", description="run config on the workers"),
        "output": Param(OUTPUT, type="string", description="run output, local or gs://"),
        "sources": Param([], type="array", description="empty: the config's sources"),
        "overrides": Param([], type="array", description="--set key=value items"),
        "env": Param({}, type="object", description="extra, non-secret environment"),
        "gemini_conn_id": Param(GEMINI_CONN_ID, type=["null", "string"]),
        "poll_seconds": Param(600, type="number", description="between two status passes"),
    },
    tags=["embedpipe"],
) as dag:
    submit = EmbedpipeSubmitOperator(
        task_id="submit",
        config="{{ params.config }}",
        output_uri="{{ params.output }}",
        sources="{{ params.sources }}",
        overrides="{{ params.overrides }}",
        **LAUNCH,
    )
    wait = EmbedpipeRunSensor(
        task_id="wait",
        output_uri="{{ params.output }}",
        run_id=submit.output["run_id"],
        poll_interval="{{ params.poll_seconds }}",
        timeout=timedelta(hours=48),  # one batch wave: up to 24 h by the Batch API's SLO
        **LAUNCH,
    )
    collect = EmbedpipeCollectOperator(
        task_id="collect",
        output_uri="{{ params.output }}",
        run_id=submit.output["run_id"],
        **LAUNCH,
    )
    submit >> wait >> collect
