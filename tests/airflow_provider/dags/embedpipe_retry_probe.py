"""Test DAG: the shipped operators with a crash injected into the first try of submit
and of collect (``EMBEDPIPE_CRASH_AT``, embedpipe's SIGKILL test hook), so Airflow's own
retry runs each step again; and the non-deferrable wait (reschedule mode)."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from embedpipe_airflow.operators import EmbedpipeCollectOperator, EmbedpipeSubmitOperator
from embedpipe_airflow.sensors import EmbedpipeRunSensor


def crash_on_first_try(point: str) -> dict[str, str]:
    return {"EMBEDPIPE_CRASH_AT": "{{ '%s' if ti.try_number == 1 else '' }}" % point}


with DAG(
    dag_id="embedpipe_retry_probe",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
) as dag:
    submit = EmbedpipeSubmitOperator(
        task_id="submit",
        config="{{ params.config }}",
        output_uri="{{ params.output }}",
        sources="{{ params.sources }}",
        overrides="{{ params.overrides }}",
        env=crash_on_first_try("created"),
    )
    wait = EmbedpipeRunSensor(
        task_id="wait",
        output_uri="{{ params.output }}",
        run_id=submit.output["run_id"],
        deferrable=False,
        mode="reschedule",
        poll_interval=1,
        timeout=300,
    )
    collect = EmbedpipeCollectOperator(
        task_id="collect",
        output_uri="{{ params.output }}",
        run_id=submit.output["run_id"],
        env=crash_on_first_try("part-written"),
    )
    submit >> wait >> collect
