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

from embedpipe_airflow.flows import LAUNCH_FROM_PARAMS
from embedpipe_airflow.operators import EmbedpipeCommandOperator

CONFIG = "/opt/embedpipe/configs/migration.yaml"
OUTPUT = "gs://YOUR_BUCKET/embedpipe-migration"
COMMON_PARAMS = {
    "output": Param(OUTPUT, type="string", description="migration output, local or gs://"),
    "env": Param({}, type="object", description="extra, non-secret environment"),
    "gemini_conn_id": Param("embedpipe_gemini", type=["null", "string"]),
}


def migrate(task_id: str, *args, **kwargs) -> EmbedpipeCommandOperator:
    """An ``embedpipe migrate ...`` task on this DAG's output."""
    return EmbedpipeCommandOperator(
        task_id=task_id, command=["migrate", *args, "--output", "{{ params.output }}"],
        **LAUNCH_FROM_PARAMS, **kwargs,
    )


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
    evaluate = ("--queries", "{{ params.queries }}", "-k", "{{ params.k }}")
    chain(
        migrate("import_legacy", "import", "--config", "{{ params.config }}",
                "--legacy", "{{ params.legacy }}"),
        migrate("plan", "plan", "--fraction", "{{ params.pilot_fraction }}"),
        migrate("reembed_pilot", "run", "--fraction", "{{ params.pilot_fraction }}",
                execution_timeout=timedelta(hours=30)),
        migrate("evaluate_pilot", "evaluate", *evaluate),
        migrate("reembed_all", "run", execution_timeout=timedelta(days=7)),
        migrate("evaluate_all", "evaluate", *evaluate),
        EmbedpipeCommandOperator(
            task_id="cutover",
            command="{{ ['migrate', 'cutover', '--output', params.output]"
                    " + (['--force'] if params.force_cutover else []) }}",
            retries=0,  # a refused cut-over is a decision, not a fault
            **LAUNCH_FROM_PARAMS,
        ),
    )

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
    migrate("rollback", "rollback")
