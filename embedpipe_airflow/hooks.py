"""Running the ``embedpipe`` command line from Airflow.

Why a child process rather than the Python API: exit codes are embedpipe's documented
contract; Beam pipelines, ffmpeg and FAISS run (and free their memory) outside Airflow's
task process; the trigger can wait on a child without blocking the triggerer's event
loop; and the Gemini API key is placed in the child's environment only. The key comes
from an Airflow connection (``gemini_conn_id``: its password) or, without one, from the
environment the worker or triggerer already has. It is never an argument, an XCom, a
template field or a trigger kwarg, and the command line never prints it.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from pipeline.cli import EXIT_DEADLETTERS, EXIT_OK, EXIT_PENDING, EXIT_USAGE

# Where embedpipe looks for the key besides ``gemini.api_key_env`` (its fallbacks).
KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
STDERR_TAIL_LINES = 30


@dataclass(frozen=True)
class CliResult:
    """What one ``embedpipe`` invocation returned."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr_tail: str

    @property
    def command(self) -> str:
        return f"embedpipe {self.args[0]}" if self.args else "embedpipe"

    def json(self):
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AirflowException(
                f"`{self.command}` printed no JSON on stdout: {self.stdout[-500:]!r}"
            ) from exc

    def last_line(self) -> str:
        lines = [line.strip() for line in self.stdout.splitlines() if line.strip()]
        if not lines:
            raise AirflowException(f"`{self.command}` printed nothing on stdout")
        return lines[-1]

    def describe(self) -> str:
        code = self.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited {code}"
        return f"`{self.command}` {how}; last stderr lines:\n{self.stderr_tail.rstrip()}"


def raise_for_exit(result: CliResult) -> None:
    """Map embedpipe's exit codes onto Airflow's retry semantics.

    0 passes. 2 (usage, config or budget) and 3 (dead letters over tolerance; the run has
    completed) cannot get better by retrying: the task fails at once, without retries.
    75 (jobs still pending) and anything else (1, a signal, an OOM kill) fail retryably:
    every embedpipe step is ledger-guarded, so a retry continues the run and never pays
    for a chunk twice.
    """
    code = result.returncode
    if code == EXIT_OK:
        return
    if code == EXIT_USAGE:
        raise AirflowFailException(
            f"{result.describe()}\nA config, usage or budget error: retrying cannot help; "
            "fix it and clear the task."
        )
    if code == EXIT_DEADLETTERS:
        raise AirflowFailException(f"{result.describe()}\nDead letters exceeded deadletter_tolerance.")
    if code == EXIT_PENDING:
        raise AirflowException(f"`{result.command}`: batch jobs are still pending; a retry continues the run")
    raise AirflowException(result.describe())


def resolve_executable(configured: str | None) -> str:
    """``configured`` (a path or a name on PATH), else the ``embedpipe`` script installed
    beside this interpreter (``pip install embedpipe[airflow]``), else ``embedpipe`` on PATH."""
    if configured:
        found = shutil.which(configured)
        if not found:
            raise AirflowFailException(f"embedpipe_bin={configured!r} is not an executable file")
        return found
    beside = Path(sys.executable).parent / "embedpipe"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("embedpipe")
    if found:
        return found
    raise AirflowFailException(
        "no `embedpipe` executable beside the interpreter or on PATH: install "
        "'embedpipe[airflow]' in this environment or pass embedpipe_bin"
    )


def refuse_key_in_env(env: dict, api_key_env: str) -> None:
    """Extra environment is a template field and a trigger kwarg: it is rendered in the UI
    and stored in the metadata database, so it must never carry the key."""
    leaking = sorted({api_key_env, *KEY_VARIABLES} & set(env))
    if leaking:
        raise AirflowFailException(
            f"env sets {', '.join(leaking)}: never pass the API key through env; put it in "
            "an Airflow connection (gemini_conn_id) or in the worker's environment"
        )


def _password(conn, conn_id: str) -> str:
    if not conn.password:
        raise AirflowFailException(
            f"connection {conn_id!r} has no password: store the Gemini API key there"
        )
    return conn.password


class EmbedpipeHook(BaseHook):
    """Runs ``embedpipe`` subcommands with the key (if any) in the child's environment.

    :param gemini_conn_id: connection whose password is the Gemini API key; ``None``
        leaves the key to the environment the worker or triggerer runs in.
    :param api_key_env: the variable the run's config reads (``gemini.api_key_env``).
    :param embedpipe_bin: the ``embedpipe`` executable (default: beside this interpreter).
    :param env: extra, non-secret environment for the child (e.g. ``STORAGE_EMULATOR_HOST``).
    :param cwd: working directory of the child (relative ``--sources`` resolve from it).
    """

    conn_name_attr = "gemini_conn_id"
    default_conn_name = "embedpipe_gemini"
    conn_type = "embedpipe"
    hook_name = "embedpipe (Gemini API key)"

    def __init__(
        self,
        *,
        gemini_conn_id: str | None = None,
        api_key_env: str = "GEMINI_API_KEY",
        embedpipe_bin: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ):
        super().__init__()
        self.gemini_conn_id = gemini_conn_id
        self.api_key_env = api_key_env
        self.embedpipe_bin = embedpipe_bin
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        refuse_key_in_env(self.env, api_key_env)
        self.cwd = cwd
        self._proc: subprocess.Popen | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict:
        return {
            "hidden_fields": ["host", "schema", "login", "port", "extra", "description"],
            "relabeling": {"password": "Gemini API key"},
        }

    def _child_env(self, key: str | None) -> dict[str, str]:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        if key is not None:
            env[self.api_key_env] = key
        return env

    def _argv(self, args) -> list[str]:
        argv = [resolve_executable(self.embedpipe_bin), *map(str, args)]
        self.log.info("Running %s", shlex.join(argv))  # arguments never hold the key
        return argv

    def run(self, args) -> CliResult:
        """Run to the end, streaming stderr (progress) into the task log."""
        key = None
        if self.gemini_conn_id:
            key = _password(self.get_connection(self.gemini_conn_id), self.gemini_conn_id)
        argv = self._argv(args)
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        with tempfile.TemporaryFile() as out:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE,
                env=self._child_env(key), cwd=self.cwd, text=True, errors="replace",
            )
            for line in self._proc.stderr:
                self.log.info("%s", line.rstrip())
                tail.append(line)
            code = self._proc.wait()
            self._proc = None
            out.seek(0)
            stdout = out.read().decode("utf-8", errors="replace")
        return CliResult(tuple(map(str, args)), code, stdout, "".join(tail))

    async def arun(self, args) -> CliResult:
        """Run to the end without blocking the event loop (for triggers)."""
        key = None
        if self.gemini_conn_id:
            key = _password(await self.aget_connection(self.gemini_conn_id), self.gemini_conn_id)
        proc = await asyncio.create_subprocess_exec(
            *self._argv(args), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self._child_env(key), cwd=self.cwd,
        )
        try:
            stdout, stderr = await proc.communicate()
        except asyncio.CancelledError:
            # The triggerer dropped us (task cleared, triggerer shut down): stop the
            # child; its pass is ledger-guarded, so the next poll picks up from there.
            if proc.returncode is None:
                proc.terminate()
                await asyncio.shield(proc.wait())
            raise
        lines = stderr.decode("utf-8", errors="replace").splitlines(keepends=True)
        return CliResult(
            tuple(map(str, args)), proc.returncode, stdout.decode("utf-8", errors="replace"),
            "".join(lines[-STDERR_TAIL_LINES:]),
        )

    def read_run_files(self, *uris: str) -> list:
        """JSON files a run wrote (plan, manifest, run state), read by a child with the
        children's environment (without the key) and working directory, so they come
        from the storage the ``embedpipe`` children wrote to (``run_files``)."""
        argv = [sys.executable, "-m", "embedpipe_airflow.run_files", *uris]
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, env=self._child_env(None),
            cwd=self.cwd, text=True, errors="replace",
        )
        if proc.returncode != 0:
            tail = "".join(proc.stderr.splitlines(keepends=True)[-STDERR_TAIL_LINES:])
            raise AirflowException(f"reading {', '.join(uris)} exited {proc.returncode}:\n{tail.rstrip()}")
        return json.loads(proc.stdout)

    def terminate(self) -> None:
        """Stop a running child (``on_kill``); a ledger-guarded step resumes on retry."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
