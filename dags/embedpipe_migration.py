"""Migration from gemini-embedding-001 to Embedding 2, with a gated cut-over.

import the legacy store → plan → re-embed a pilot fraction → evaluate it on your queries
→ re-embed the rest → evaluate → cut the serving pointer over. ``migrate cutover``
refuses (and this DAG stops) when the evaluation does not pass its gate, unless
``force_cutover`` is set. Each step is an ``embedpipe migrate`` command; state and
reports live under ``<output>/migration/``. ``embedpipe_migration_rollback`` (a separate
DAG, triggered by hand) points serving back at the legacy index.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, chain

from embedpipe_airflow.operators import EmbedpipeCommandOperator

CONFIG = "/opt/embedpipe/configs/migration.yaml"
OUTPUT = "gs://YOUR_BUCKET/embedpipe-migration"
GEMINI_CONN_ID = "embedpipe_gemini"

LAUNCH = {
    "gemini_conn_id": "{{ params.gemini_conn_id }}",
    "env": "{{ params.env }}",
}
COMMON_PARAMS = {
    "output": Param(OUTPUT, type="string", description="migration output, local or gs://"),
    "env": Param({}, type="object", description="extra, non-secret environment"),
    "gemini_conn_id": Param(GEMINI_CONN_ID, type=["null", "string"]),
}

with DAG(
    dag_id="embedpipe_migration",
    description="Re-embed a gemini-embedding-001 corpus with Embedding 2 and cut over",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        **COMMON_PARAMS,
        "config": Param(CONFIG, type="string", description="migration config on the workers"),
        "legacy": Param("gs://YOUR_BUCKET/legacy-001/", type="string",
                        description="legacy vectors: Parquet/JSONL with text and a 001 vector"),
        "queries": Param("/opt/embedpipe/queries.jsonl", type="string",
                         description="your evaluation queries"),
        "pilot_fraction": Param(0.05, type="number", exclusiveMinimum=0, maximum=1),
        "k": Param(10, type="integer", minimum=1),
        "force_cutover": Param(False, type="boolean", description="cut over even if the gate fails"),
    },
    tags=["embedpipe", "migration"],
) as dag:
    output = "{{ params.output }}"
    import_legacy = EmbedpipeCommandOperator(
        task_id="import_legacy",
        command=["migrate", "import", "--config", "{{ params.config }}",
                 "--legacy", "{{ params.legacy }}", "--output", output],
        **LAUNCH,
    )
    plan = EmbedpipeCommandOperator(
        task_id="plan",
        command=["migrate", "plan", "--output", output, "--fraction", "{{ params.pilot_fraction }}"],
        **LAUNCH,
    )
    pilot = EmbedpipeCommandOperator(
        task_id="reembed_pilot",
        command=["migrate", "run", "--output", output, "--fraction", "{{ params.pilot_fraction }}"],
        execution_timeout=timedelta(hours=30),
        **LAUNCH,
    )
    evaluate_pilot = EmbedpipeCommandOperator(
        task_id="evaluate_pilot",
        command=["migrate", "evaluate", "--output", output,
                 "--queries", "{{ params.queries }}", "-k", "{{ params.k }}"],
        **LAUNCH,
    )
    full = EmbedpipeCommandOperator(
        task_id="reembed_all",
        command=["migrate", "run", "--output", output],
        execution_timeout=timedelta(days=7),
        **LAUNCH,
    )
    evaluate_full = EmbedpipeCommandOperator(
        task_id="evaluate_all",
        command=["migrate", "evaluate", "--output", output,
                 "--queries", "{{ params.queries }}", "-k", "{{ params.k }}"],
        **LAUNCH,
    )
    cutover = EmbedpipeCommandOperator(
        task_id="cutover",
        command="{{ ['migrate', 'cutover', '--output', params.output]"
                " + (['--force'] if params.force_cutover else []) }}",
        retries=0,  # a refused cut-over is a decision, not a fault
        **LAUNCH,
    )
    chain(import_legacy, plan, pilot, evaluate_pilot, full, evaluate_full, cutover)

with DAG(
    dag_id="embedpipe_migration_rollback",
    description="Point serving back at the legacy index",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    params=COMMON_PARAMS,
    tags=["embedpipe", "migration"],
) as rollback_dag:
    EmbedpipeCommandOperator(
        task_id="rollback",
        command=["migrate", "rollback", "--output", "{{ params.output }}"],
        **LAUNCH,
    )
