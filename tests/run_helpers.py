"""Helpers for the end-to-end reliability tests (``tests/test_exactly_once.py``).

They run the real ``embedpipe`` command line as subprocesses (so ``kill -9``, exit codes
and two processes racing are the real thing), read what a run left behind, and read the
emulator's books: which batch jobs exist, for which request file, what they billed.
"""
from __future__ import annotations

import contextlib
import glob
import importlib.util
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
LOCAL = str(REPO / "configs" / "local.yaml")
CRASH_ENV = "EMBEDPIPE_CRASH_AT"
CRASH_POINTS = ("claimed", "created", "polled", "downloaded", "part-written")
EXIT_PENDING = 75

# Several request files (≤ 8 lines) and several waves (quota 3,000 tokens), fast polling,
# no index (not under test here).
FAST = (
    "--set", "requests.max_lines_per_file=8",
    "--set", "quota.enqueued_tokens=3000",
    "--set", "gemini.poll_interval_s=0.05",
    "--set", "gemini.max_poll_interval_s=0.2",
    "--set", "index.enabled=false",
)


def _embedpipe_argv() -> list[str]:
    script = Path(sys.executable).parent / "embedpipe"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "pipeline.cli"]


def write_sample_corpus(root: Path) -> Path:
    """The demo's 39 text documents (``scripts/sample_corpus.py``) under ``root/corpus``."""
    spec = importlib.util.spec_from_file_location("sample_corpus", REPO / "scripts" / "sample_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    corpus = Path(root) / "corpus"
    assert len(module.write_corpus(str(corpus))) == 39
    return corpus


# -- running the CLI -------------------------------------------------------------------
def cli_env(*, api_key: str | None = None, crash_at: str | None = None) -> dict[str, str]:
    """The test environment minus anything that could leak in (keys, crash points)."""
    env = {k: v for k, v in os.environ.items()
           if k not in (CRASH_ENV, "GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env["NO_GCE_CHECK"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    if api_key:
        env["GEMINI_API_KEY"] = api_key
    if crash_at:
        env[CRASH_ENV] = crash_at
    return env


@dataclass
class Result:
    args: tuple
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def explain(self) -> str:
        return (f"`embedpipe {' '.join(self.args[:2])} ...` exited {self.returncode} "
                f"after {self.seconds:.1f}s\n--- stdout (tail) ---\n{self.stdout[-2000:]}"
                f"\n--- stderr (tail) ---\n{self.stderr[-4000:]}")


class Running:
    """A started ``embedpipe`` subprocess."""

    def __init__(self, args: tuple, env: dict[str, str]):
        self.args = args
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*_embedpipe_argv(), *args], cwd=REPO, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def wait(self, timeout: float = 300) -> Result:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"embedpipe {' '.join(self.args)} timed out after {timeout}s\n"
                                 f"{err[-4000:]}") from None
        return Result(self.args, self.proc.returncode, out, err, time.monotonic() - self.started)


def start(*args: str, env: dict[str, str]) -> Running:
    return Running(tuple(str(a) for a in args), env)


def embedpipe(*args: str, env: dict[str, str], timeout: float = 300) -> Result:
    return start(*args, env=env).wait(timeout)


def run_args(command: str, corpus, output, *extra: str) -> tuple:
    return (command, "--config", LOCAL, "--sources", str(corpus), "--output", str(output),
            *FAST, *extra)


def gemini_args(base_url: str) -> tuple:
    """Point a run at an emulator (or any Gemini REST endpoint) started elsewhere."""
    return ("--set", "backend=gemini", "--set", f"gemini.base_url={base_url}")


def killed_by_sigkill(returncode: int) -> bool:
    return returncode in (-9, 137)


def wait_then_collect(output, env: dict[str, str], timeout: float = 240) -> tuple[list[Result], Result]:
    """The Airflow pattern for split mode: poll ``status`` until it exits 0, then ``collect``.
    Returns (status results, the collect result)."""
    deadline = time.monotonic() + timeout
    polls: list[Result] = []
    while True:
        res = embedpipe("status", "--output", str(output), env=env)
        polls.append(res)
        if res.returncode == 0:
            break
        assert res.returncode == EXIT_PENDING, res.explain()
        assert time.monotonic() < deadline, (
            f"status still pending after {timeout}s ({len(polls)} polls); last:\n{res.explain()}")
        time.sleep(0.2)
    return polls, embedpipe("collect", "--output", str(output), env=env)


# -- a standalone emulator in the test process ----------------------------------------
@contextlib.contextmanager
def standalone_emulator(state_dir, port: int = 0, **kwargs) -> Iterator[tuple]:
    """(server, base_url, api_key) of an emulator other processes reach over HTTP."""
    from pipeline.emulator import EmulatorServer

    key = kwargs.pop("api_key", None) or secrets.token_urlsafe(16)
    server = EmulatorServer(port=port, api_key=key, state_dir=str(state_dir), **kwargs)
    base_url = server.start()
    try:
        yield server, base_url, key
    finally:
        server.stop()


def drive_held_jobs(server, output, env: dict[str, str], max_passes: int = 50) -> list[Result]:
    """Split mode against an emulator that holds every new job (``hold_jobs``): release
    what is held, let the emulator process it (no sleeping, no race), make one
    ``status`` pass (which also submits the next wave, held again), until ``status``
    says 0. Returns the status results."""
    polls: list[Result] = []
    for _ in range(max_passes):
        server.release_jobs()
        assert server.wait_idle(), "the emulator did not finish the released jobs"
        res = embedpipe("status", "--output", str(output), env=env)
        polls.append(res)
        if res.returncode == 0:
            return polls
        assert res.returncode == EXIT_PENDING, res.explain()
    raise AssertionError(f"status still pending after {max_passes} release/status passes:\n"
                         f"{polls[-1].explain()}")


@dataclass
class EmulatorProcess:
    """``embedpipe emulator`` running as its own process (its output goes to files, so a
    chatty log can never block it on a full pipe)."""

    proc: subprocess.Popen
    base_url: str
    stdout: Path
    stderr: Path

    def admin(self, path: str, payload: dict | None = None) -> dict:
        import httpx

        url = f"{self.base_url}/_emulator/{path}"
        reply = httpx.post(url, json=payload, timeout=120) if payload is not None else httpx.get(url, timeout=30)
        reply.raise_for_status()
        return reply.json()

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def emulator_process(workdir: Path, *args: str, env: dict[str, str]) -> Iterator[EmulatorProcess]:
    """Start ``embedpipe [args] emulator --port 0 ...`` (``args`` are the emulator's
    options; a leading ``-v`` goes before the command) and wait for its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    out, err = workdir / "emulator.stdout", workdir / "emulator.stderr"
    verbose = [a for a in args if a == "-v"]
    options = [a for a in args if a != "-v"]
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([*_embedpipe_argv(), *verbose, "emulator", "--port", "0", *options],
                                cwd=REPO, env=env, stdout=fo, stderr=fe, text=True)
    deadline = time.monotonic() + 120  # start-up only; nothing is asserted about its speed
    url = None
    while url is None:
        found = [w for w in out.read_text().split() if w.startswith("http://")]
        if found:
            url = found[0]
        elif proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"embedpipe emulator did not start (exit {proc.poll()}):\n{err.read_text()}")
        else:
            time.sleep(0.05)
    emulator = EmulatorProcess(proc, url, out, err)
    try:
        yield emulator
    finally:
        emulator.stop()


def emulator_stats(state_dir) -> dict:
    """The books of an emulator whose processes have ended, read from its state dir."""
    from pipeline.emulator import EmulatorServer

    return EmulatorServer(state_dir=str(state_dir)).stats()


def fast_forward_jobs(state_dir) -> int:
    """Make every stored job of a STOPPED emulator due now (its clock jumps ahead), so
    the next emulator on this state dir runs them at once. Returns how many changed."""
    now = time.time()
    changed = 0
    for path in Path(state_dir, "jobs").glob("*.json"):
        job = json.loads(path.read_text())
        if job["ends_at"] > now:
            job["pending_until"] = min(job["pending_until"], now)
            job["ends_at"] = now
            path.write_text(json.dumps(job, sort_keys=True))
            changed += 1
    return changed


def job_input_keys(state_dir, job: dict) -> list[str]:
    """Keys of the request file a job was created from (the emulator keeps uploads)."""
    blob = Path(state_dir, "blobs", job["request_file"].split("files/", 1)[-1])
    return [json.loads(line)["key"] for line in blob.read_bytes().splitlines() if line.strip()]


def jobs_by_request(stats: dict, run_id: str) -> dict[str, list[dict]]:
    """The emulator's jobs of one run, by request file (from the display name
    ``embedpipe-<run_id>-<request>-a<attempt>``)."""
    prefix = f"embedpipe-{run_id}-"
    out: dict[str, list[dict]] = defaultdict(list)
    for job in stats["jobs"]:
        if job["display_name"].startswith(prefix):
            request, _, attempt = job["display_name"][len(prefix):].rpartition("-a")
            assert attempt.isdigit(), job["display_name"]
            out[request].append(job)
    return dict(out)


# -- what a run left behind ------------------------------------------------------------
def run_dirs(output) -> list[Path]:
    runs = Path(output, "runs")
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def only_run(output) -> Path:
    dirs = run_dirs(output)
    assert len(dirs) == 1, f"expected exactly one run under {output}, found {[d.name for d in dirs]}"
    return dirs[0]


def request_files(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "requests" / "files.json").read_text())


def keys_of(keys_path) -> list[str]:
    """Chunk ids of a key list (a local path or, for gs:// runs, the object)."""
    from transforms import fs

    data = io.BytesIO(fs.read_bytes(str(keys_path)))
    return pq.read_table(data, columns=["chunk_id"]).column("chunk_id").to_pylist()


def planned_keys(run_dir: Path) -> list[str]:
    """Every chunk the plan sent to the API (original request files only)."""
    keys: list[str] = []
    for info in request_files(run_dir):
        keys += keys_of(info["keys_path"])
    return keys


def ledger(run_dir: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["request_name"]: json.loads(p.read_text())
            for p in sorted((run_dir / "ledger").glob("*.json"))}


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def embeddings(run_dir: Path, pattern: str = "part-*.parquet") -> pa.Table:
    paths = sorted(glob.glob(str(run_dir / "embeddings" / pattern)))
    if not paths:
        return pa.table({"chunk_id": pa.array([], pa.string()), "token_count": pa.array([], pa.int64())})
    return pa.concat_tables(pq.read_table(p) for p in paths)


def all_embeddings(run_dir: Path) -> pa.Table:
    """part-* (embedded by this run) and carried-* (unchanged, from the previous run)."""
    tables = [t for t in (embeddings(run_dir, "part-*.parquet"), embeddings(run_dir, "carried-*.parquet"))
              if t.num_rows]
    return pa.concat_tables(tables) if tables else embeddings(run_dir)


def deadletters(run_dir: Path, pattern: str = "*.jsonl") -> list[dict]:
    rows = []
    for path in sorted(glob.glob(str(run_dir / "deadletters" / pattern))):
        rows += [json.loads(line) for line in open(path) if line.strip()]
    return rows


def vectors(table: pa.Table) -> dict[str, np.ndarray]:
    ids = table.column("chunk_id").to_pylist()
    flat = table.column("embedding").combine_chunks()
    matrix = flat.flatten().to_numpy(zero_copy_only=False).reshape(len(ids), -1)
    return dict(zip(ids, matrix))


def token_sum(table: pa.Table) -> int:
    return sum(t or 0 for t in table.column("token_count").to_pylist())


# -- the rules, as assertions ----------------------------------------------------------
def assert_created_within_quota(run_dir: Path, stats: dict) -> list[dict]:
    """The emulator's audit of every create of this run: the tokens (its own count) and
    jobs already enqueued at that moment, plus the new job, stayed within the run's
    ``quota.enqueued_tokens`` and ``quota.max_concurrent_jobs``. The emulator need not
    enforce the quota (no 429 + retry can hide a client that ignores it). Returns the
    run's jobs."""
    config = read_json(run_dir / "run.json")["config"]["quota"]
    quota, max_jobs = config["enqueued_tokens"], min(config["max_concurrent_jobs"], 100)
    jobs = [j for j in stats["jobs"] if j["display_name"].startswith(f"embedpipe-{run_dir.name}-")]
    for job in jobs:
        assert job["enqueued_tokens_at_create"] + job["estimated_tokens"] <= quota, (
            f"{job['display_name']} created with {job['enqueued_tokens_at_create']} tokens already "
            f"enqueued + its {job['estimated_tokens']} > quota {quota}")
        assert job["enqueued_jobs_at_create"] + 1 <= max_jobs, (
            f"{job['display_name']} created with {job['enqueued_jobs_at_create']} jobs active "
            f"(cap {max_jobs})")
    return jobs



def assert_one_success_per_request_file(run_dir: Path, stats: dict, *, exclusive: bool = True) -> dict:
    """Money is spent at most once: for every request file of the run (originals and
    follow-ups) the emulator holds exactly one SUCCEEDED job, and every other job for it
    is a deliberate resubmission the ledger's history records. ``exclusive``: the
    emulator served only this run. Returns the jobs by request file."""
    run_id = run_dir.name
    records = ledger(run_dir)
    jobs = jobs_by_request(stats, run_id)
    if exclusive:
        foreign = [j["display_name"] for j in stats["jobs"]
                   if not j["display_name"].startswith(f"embedpipe-{run_id}-")]
        assert not foreign, f"jobs of no request file of run {run_id}: {foreign}"
    originals = {f["name"] for f in request_files(run_dir)}
    assert originals <= set(records), f"request files without a ledger record: {originals - set(records)}"
    assert set(jobs) == set(records), (
        f"jobs for files the ledger does not know: {set(jobs) - set(records)}; "
        f"ledger records without a job: {set(records) - set(jobs)}")
    assert_created_within_quota(run_dir, stats)
    for name, record in records.items():
        mine = jobs[name]
        succeeded = [j for j in mine if j["state"] == "SUCCEEDED"]
        assert len(succeeded) == 1, f"{name}: {len(succeeded)} successful jobs: {mine}"
        assert succeeded[0]["name"] == record["job_name"], (name, succeeded, record)
        assert record["state"] == "COLLECTED", (name, record["state"])
        resubmitted = {h[0] for h in record["history"]}
        others = {j["name"] for j in mine if j["state"] != "SUCCEEDED"}
        assert others == resubmitted, (
            f"{name}: jobs besides the successful one {others} != ledger history {resubmitted}")
        assert len(mine) == 1 + len(record["history"]), (name, mine, record["history"])
        assert len({j["display_name"] for j in mine}) == len(mine), f"{name}: display name reused: {mine}"
    return jobs


def assert_every_planned_chunk_once(run_dir: Path) -> pa.Table:
    """Nothing lost, nothing twice: the Parquet parts hold every planned chunk exactly
    once, and there are no dead letters."""
    files = request_files(run_dir)
    planned = planned_keys(run_dir)
    table = embeddings(run_dir)
    ids = table.column("chunk_id").to_pylist()
    assert sum(f["lines"] for f in files) == len(planned) == len(set(planned))
    assert len(ids) == len(set(ids)), "a chunk was written twice"
    assert sorted(ids) == sorted(planned), (
        f"missing {len(set(planned) - set(ids))}, unexpected {len(set(ids) - set(planned))}")
    dead = deadletters(run_dir)
    assert dead == [], f"dead letters: {dead[:3]}"
    return table


# -- running without the file-permission capabilities ------------------------------------
def without_file_permission_override(argv: list[str]) -> list[str]:
    """``argv`` run so that file permissions apply: root keeps its uid but loses
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (util-linux ``setpriv``), so a mode-000
    file is unreadable as it is for any other user. Other users need nothing."""
    if os.geteuid() != 0:
        return list(argv)
    import shutil

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        import pytest

        pytest.skip("running as root without util-linux setpriv: cannot drop CAP_DAC_OVERRIDE")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *argv]
