"""Harness for the Airflow tests (run by `make test-airflow` in the Airflow venv).

Test modules take the session fixture with
``from airflow_harness import airflow_home  # noqa: F401 (pytest fixture)``.

One AIRFLOW_HOME per session: SQLite metadata database migrated once, the repository's
``dags/`` plus ``tests/airflow/dags/`` as the DAG folder. DAGs run through Airflow's own
``airflow dags test`` in a subprocess, exactly as a user would run them; what a run left
(task states, tries, XComs, triggers) is read back from the metadata database.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from run_helpers import cli_env

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).parent / "airflow"
DAG_DIRS = (REPO / "dags", Path(__file__).parent / "dags")


def query(db: Path, sql: str, *args) -> list[tuple]:
    """Read Airflow's metadata database (SQLite in WAL mode) read-only, and close the
    connection: a connection left open between tests keeps a snapshot of a database
    the next `airflow dags test` writes to."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return con.execute(sql, args).fetchall()


@dataclass
class DagTest:
    """One finished ``airflow dags test`` and what it left in the metadata database."""

    dag_id: str
    returncode: int
    log: str
    db: Path
    dag_run_id: int
    state: str
    seconds: float

    def explain(self) -> str:
        return (f"`airflow dags test {self.dag_id}` exited {self.returncode} (run {self.state}) "
                f"after {self.seconds:.0f}s; log tail:\n{self.log[-6000:]}")

    def _query(self, sql: str, *args):
        return query(self.db, sql, *args)

    def xcom(self, task_id: str, key: str = "return_value"):
        rows = self._query("SELECT value FROM xcom WHERE dag_run_id=? AND task_id=? AND key=?",
                           self.dag_run_id, task_id, key)
        assert rows, f"no XCom {key!r} from {task_id}\n{self.explain()}"
        return json.loads(rows[0][0])

    def task(self, task_id: str) -> tuple[str, int]:
        """(state, try_number) of a task of this run."""
        rows = self._query(
            "SELECT ti.state, ti.try_number FROM task_instance ti JOIN dag_run dr "
            "ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id WHERE dr.id=? AND ti.task_id=?",
            self.dag_run_id, task_id)
        assert rows, f"no task {task_id}\n{self.explain()}"
        return rows[0]

    def triggers(self, task_id: str) -> list[tuple[str, dict]]:
        """(classpath, kwargs) of the triggers the task deferred to."""
        rows = self._query(
            "SELECT t.classpath, t.kwargs FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
            "JOIN dag_run dr ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id "
            "WHERE dr.id=? AND ti.task_id=?", self.dag_run_id, task_id)
        return [(classpath, json.loads(kwargs)) for classpath, kwargs in rows]

    def reschedules(self, task_id: str) -> int:
        return self._query(
            "SELECT count(*) FROM task_reschedule tr JOIN task_instance ti ON tr.ti_id = ti.id "
            "JOIN dag_run dr ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id "
            "WHERE dr.id=? AND ti.task_id=?", self.dag_run_id, task_id)[0][0]


class AirflowHome:
    def __init__(self, root: Path):
        self.root = root
        self.dags = root / "dags"
        self.dags.mkdir(parents=True)
        for folder in DAG_DIRS:
            for dag_file in folder.glob("*.py"):
                (self.dags / dag_file.name).symlink_to(dag_file)
        self.db = root / "airflow.db"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # No key, no crash point and no GCS emulator address leaks in from the test
        # environment: a DAG run gets what its test gives it.
        env = {k: v for k, v in cli_env().items() if k != "STORAGE_EMULATOR_HOST"}
        env.update({
            "AIRFLOW_HOME": str(self.root),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        })
        env.update(extra or {})
        return env

    def airflow(self, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(AIRFLOW), *args], env=self.env(env), cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)

    def dags_test(self, dag_id: str, logical_date: str, conf: dict, *, env: dict | None = None,
                  timeout: float = 420, on_wait: Callable[[], object] | None = None) -> DagTest:
        """Run ``airflow dags test`` to its end. ``on_wait`` is called once, while the run
        goes on, as soon as one of its tasks has deferred or been rescheduled (e.g. to let
        the emulator end the batch jobs it holds only then: the wait then really waits,
        without a race against the clock)."""
        started = time.monotonic()
        newest = self._newest_run(dag_id)
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.Popen(
                [str(AIRFLOW), "dags", "test", dag_id, logical_date, "--conf", json.dumps(conf)],
                env=self.env(env), cwd=REPO, text=True, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a hung run is killed with its children
            )
            while proc.poll() is None:
                if on_wait is not None and self._waiting_since(dag_id, newest):
                    on_wait()
                    on_wait = None
                if time.monotonic() - started > timeout:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    out.seek(0)
                    pytest.fail(f"`airflow dags test {dag_id}` did not end within {timeout:.0f}s; "
                                f"log tail:\n{out.read()[-8000:]}", pytrace=False)
                time.sleep(0.2)
            out.seek(0)
            log = out.read()
        rows = query(self.db, "SELECT id, state FROM dag_run WHERE dag_id=? ORDER BY id DESC LIMIT 1",
                     dag_id)
        assert rows and rows[0][0] != newest, f"`airflow dags test {dag_id}` created no run:\n{log[-4000:]}"
        return DagTest(dag_id, proc.returncode, log, self.db, *rows[0], seconds=time.monotonic() - started)

    def _newest_run(self, dag_id: str) -> int | None:
        return query(self.db, "SELECT max(id) FROM dag_run WHERE dag_id=?", dag_id)[0][0]

    def _waiting_since(self, dag_id: str, newest: int | None) -> bool:
        """Whether a task of a run newer than ``newest`` has deferred or been rescheduled."""
        try:
            return bool(query(
                self.db, "SELECT 1 FROM task_instance ti JOIN dag_run dr ON ti.dag_id = dr.dag_id "
                "AND ti.run_id = dr.run_id WHERE dr.dag_id=? AND dr.id > ? AND (ti.trigger_id IS NOT NULL "
                "OR EXISTS (SELECT 1 FROM task_reschedule tr WHERE tr.ti_id = ti.id))",
                dag_id, newest or 0))
        except sqlite3.OperationalError:  # the writer holds a lock for a moment: ask again
            return False

    def files_containing(self, needle: str) -> list[Path]:
        data = needle.encode()
        return [p for p in self.root.rglob("*") if p.is_file() and data in p.read_bytes()]


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> AirflowHome:
    home = AirflowHome(tmp_path_factory.mktemp("airflow-home"))
    migrated = home.airflow("db", "migrate")
    assert migrated.returncode == 0, migrated.stdout[-4000:]
    return home
