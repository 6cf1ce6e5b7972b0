"""The deferrable wait's trigger: polls a run with ``embedpipe status`` in the triggerer.

Each poll is one idempotent driver pass, exactly what ``embedpipe status`` does: poll the
batch jobs, download the ended ones, resubmit failed ones and submit the next wave or
follow-ups that fit the quota. So a multi-wave run moves forward while no worker slot is
held, and ``collect`` afterwards only writes. The child runs as an asyncio subprocess:
thousands of deferred waits share one triggerer event loop.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from embedpipe_airflow.hooks import EmbedpipeHook
from pipeline.cli import EXIT_OK, EXIT_PENDING


def status_args(output: str, run_id: str) -> list[str]:
    return ["status", "--output", output, "--run", run_id]


class EmbedpipeRunTrigger(BaseTrigger):
    """Fires once the run's jobs have all ended and their results are in (``status`` exit 0),
    or once ``status`` fails (any exit but 0 and 75), with the exit code and stderr tail.

    The serialized kwargs name the connection, never the key: the triggerer resolves
    ``gemini_conn_id`` itself when it starts the child.
    """

    def __init__(self, *, output: str, run_id: str, poll_interval: float = 300.0,
                 launch: dict[str, Any] | None = None):
        """``launch``: ``EmbedpipeHook``'s keyword arguments (connection id, key variable
        name, executable, extra environment, working directory)."""
        super().__init__()
        self.output = output
        self.run_id = run_id
        self.poll_interval = float(poll_interval)
        self.launch = dict(launch or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"output": self.output, "run_id": self.run_id, "poll_interval": self.poll_interval,
             "launch": self.launch},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = EmbedpipeHook(**self.launch)
        polls = 0
        while True:
            await asyncio.sleep(self.poll_interval)  # the sensor checked just before deferring
            result = await hook.arun(status_args(self.output, self.run_id))
            polls += 1
            if result.returncode == EXIT_OK:
                yield TriggerEvent({"status": "done", "polls": polls, **result.json()})
                return
            if result.returncode != EXIT_PENDING:
                yield TriggerEvent({
                    "status": "failed", "polls": polls, "returncode": result.returncode,
                    "message": result.describe(),
                })
                return
            self.log.info("run %s pending after poll %d; request files by state: %s",
                          self.run_id, polls, result.json().get("jobs"))
