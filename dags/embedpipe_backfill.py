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

from embedpipe_airflow.flows import run_params, submit_wait_collect

CONFIG = "/opt/embedpipe/configs/dataflow.yaml"
OUTPUT = "gs://YOUR_BUCKET/embedpipe"

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
        **run_params(CONFIG, OUTPUT, poll_seconds=900),
        "max_cost_usd": Param(100.0, type="number", minimum=0, description="budget at batch price"),
    },
    tags=["embedpipe"],
) as dag:
    submit_wait_collect(
        wait_timeout=timedelta(days=7),  # waves x up to 24 h each
        overrides="{{ ['max_cost_usd=' ~ params.max_cost_usd] + params.overrides }}",
    )
