"""Nightly incremental re-embedding of a corpus.

submit → wait (deferrable) → collect, once a day. Each run diffs its listing against the
last successful run under the same output: only new or changed objects are chunked and
paid for, unchanged objects' rows are carried over, deleted ones become tombstones. A night
with nothing changed plans zero request files, submits no batch job, does not defer, and
collect just carries the rows forward.

Edit CONFIG and OUTPUT (or pass them in the run's conf); the launching worker and the
triggerer need ``embedpipe[airflow]`` installed and the Gemini API key in the connection
``embedpipe_gemini`` (its password), or in their environment with ``gemini_conn_id: null``.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from embedpipe_airflow.flows import run_params, submit_wait_collect

CONFIG = "/opt/embedpipe/configs/dataflow.yaml"
OUTPUT = "gs://YOUR_BUCKET/embedpipe"

with DAG(
    dag_id="embedpipe_nightly",
    description="Re-embed what changed in the corpus since the last run",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # runs of one output are sequential: each diffs against the last
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params=run_params(CONFIG, OUTPUT),
    tags=["embedpipe"],
) as dag:
    submit_wait_collect(wait_timeout=timedelta(hours=48))  # one wave: up to 24 h (Batch API SLO)
