"""The wait between ``submit`` and ``collect``: minutes to a day per wave of batch jobs."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Sequence

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from embedpipe_airflow.hooks import CliResult, raise_for_exit
from embedpipe_airflow.operators import LAUNCH_FIELDS, EmbedpipeLaunchMixin
from embedpipe_airflow.triggers import EmbedpipeRunTrigger, status_args
from pipeline.cli import EXIT_OK, EXIT_PENDING, EXIT_USAGE


class EmbedpipeRunSensor(EmbedpipeLaunchMixin, BaseSensorOperator):
    """Waits until every batch job of a run has ended and its results are in.

    Each check is one ``embedpipe status`` pass, which also downloads ended jobs and
    submits the next wave or follow-ups that fit the quota (a multi-wave run advances
    while it waits). ``deferrable=True`` (the default): one check on the worker, then
    the wait moves to the triggerer (``EmbedpipeRunTrigger``, a check every
    ``poll_interval`` seconds) and holds no worker slot; a run that is already complete
    (e.g. nothing changed since the last run) never defers. ``deferrable=False`` falls
    back to a classic sensor: ``mode="reschedule"`` frees the slot between checks,
    ``mode="poke"`` holds it.

    Returns ``{"run_id", "jobs" (request files by state), "pending": false, "polls",
    "deferred"}``. A ``status`` failure other than "pending" fails the task (exit 2 without
    retry); the sensor's ``timeout`` bounds the whole wait.

    :param poll_interval: seconds between two checks, deferred or not (templated; it
        sets ``poke_interval``).
    """

    template_fields: Sequence[str] = ("output_uri", "run_id", "poll_interval", *LAUNCH_FIELDS)
    ui_color = "#f0ead6"

    def __init__(
        self,
        *,
        output_uri: str,
        run_id: str,
        poll_interval: float | str = 300.0,
        deferrable: bool = True,
        gemini_conn_id: str | None = None,
        api_key_env: str = "GEMINI_API_KEY",
        embedpipe_bin: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        **kwargs,
    ):
        if isinstance(poll_interval, (int, float)):
            kwargs["poke_interval"] = poll_interval
        super().__init__(**kwargs)
        self.output_uri = output_uri
        self.run_id = run_id
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._set_launch(gemini_conn_id, api_key_env, embedpipe_bin, env, cwd)

    def _check(self) -> CliResult:
        result = self.run_cli(status_args(self.output_uri, self.run_id))
        if result.returncode not in (EXIT_OK, EXIT_PENDING):
            raise_for_exit(result)
        return result

    def poke(self, context) -> PokeReturnValue:
        result = self._check()
        status = result.json()
        self.log.info("run %s: request files by state: %s", self.run_id, status["jobs"])
        done = result.returncode == EXIT_OK
        return PokeReturnValue(done, {**status, "polls": 1, "deferred": False} if done else None)

    def execute(self, context) -> Any:
        self.poke_interval = float(self.poll_interval)
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=EmbedpipeRunTrigger(
                output=self.output_uri, run_id=self.run_id, poll_interval=self.poke_interval,
                launch=self.launch_kwargs(),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context, event: dict) -> dict:
        if event["status"] != "done":
            if event["returncode"] == EXIT_USAGE:
                raise AirflowFailException(event["message"])
            raise AirflowException(event["message"])
        self.log.info("run %s complete after %d poll(s) in the triggerer", self.run_id, event["polls"])
        return {**{k: v for k, v in event.items() if k != "status"}, "deferred": True}
