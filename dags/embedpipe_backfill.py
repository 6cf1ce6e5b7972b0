"""Backfill: embed an existing corpus once, under a budget.

Triggered by hand with the corpus and a budget (``max_cost_usd``). ``submit`` lists and
chunks the corpus, writes the plan and refuses it (exit 2: the task fails at once, no
retry, with the estimate in the log) if its estimated batch cost is over the budget;
otherwise it submits the first wave. A large corpus needs several waves under the
enqueued-token quota: the deferred wait submits each next wave as the previous one ends.

Trigger it with a conf such as
``{"sources": ["gs://bucket/archive/**"], "output": "gs://bucket/embedpipe", "max_cost_usd": 250}``.
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
    dag_id="embedpipe_backfill",
    description="Embed a corpus once, refused above max_cost_usd",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "config": Param(CONFIG, type="string", description="run config on the workers"),
        "output": Param(OUTPUT, type="string", description="run output, local or gs://"),
        "sources": Param([], type="array", description="the corpus; empty: the config's sources"),
        "max_cost_usd": Param(100.0, type="number", minimum=0, description="budget, batch price"),
        "overrides": Param([], type="array", description="more --set key=value items"),
        "env": Param({}, type="object", description="extra, non-secret environment"),
        "gemini_conn_id": Param(GEMINI_CONN_ID, type=["null", "string"]),
        "poll_seconds": Param(900, type="number", description="between two status passes"),
    },
    tags=["embedpipe"],
) as dag:
    submit = EmbedpipeSubmitOperator(
        task_id="submit",
        config="{{ params.config }}",
        output_uri="{{ params.output }}",
        sources="{{ params.sources }}",
        overrides="{{ ['max_cost_usd=' ~ params.max_cost_usd] + params.overrides }}",
        **LAUNCH,
    )
    wait = EmbedpipeRunSensor(
        task_id="wait",
        output_uri="{{ params.output }}",
        run_id=submit.output["run_id"],
        poll_interval="{{ params.poll_seconds }}",
        timeout=timedelta(days=7),  # waves x up to 24 h each
        **LAUNCH,
    )
    collect = EmbedpipeCollectOperator(
        task_id="collect",
        output_uri="{{ params.output }}",
        run_id=submit.output["run_id"],
        **LAUNCH,
    )
    submit >> wait >> collect
