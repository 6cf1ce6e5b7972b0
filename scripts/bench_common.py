"""What every benchmark script shares: the result rows ``make bench`` collects into
``bench-results.json``, timing that survives a shared machine, and cProfile breakdowns.

A row is ``{"name", "value", "baseline", "ratio", "goal", "met", "n", "cores"}``: the
project's figure, the baseline measured in the same run, their ratio, the goal as text,
whether it is met, the input size and this machine's core count.
"""
from __future__ import annotations

import cProfile
import json
import multiprocessing as mp
import os
import pstats
import resource
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def cores() -> int:
    return len(os.sched_getaffinity(0))


def row(name: str, value: float, baseline: float | None, ratio: float | None, goal: str,
        met: bool, n: int) -> dict:
    return {
        "name": name,
        "value": None if value is None else round(float(value), 4),
        "baseline": None if baseline is None else round(float(baseline), 4),
        "ratio": None if ratio is None else round(float(ratio), 4),
        "goal": goal,
        "met": bool(met),
        "n": int(n),
        "cores": cores(),
    }


def save_rows(path: str | None, rows: Sequence[dict]) -> None:
    """Write this script's rows (``make bench`` gathers every script's file)."""
    if path:
        with open(path, "w") as fh:
            json.dump(list(rows), fh, indent=2)


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {cores()} cores"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: robust to other users' load."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall s, CPU s) of one call."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def interleaved_best(fns: dict[str, Callable[[], object]], repeats: int = 3) -> dict[str, dict]:
    """Best wall and best CPU time of each function over ``repeats`` interleaved rounds, so
    a burst of load on the shared machine hits every contender alike."""
    best = {name: {"wall": float("inf"), "cpu": float("inf")} for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu = measure(fn)
            best[name]["wall"] = min(best[name]["wall"], wall)
            best[name]["cpu"] = min(best[name]["cpu"], cpu)
    return best


def profile_breakdown(fn: Callable[[], object], stages: dict[str, Sequence[str]]) -> dict[str, float]:
    """Profile ``fn`` and attribute its time to named stages: each stage is the cumulative
    time of the functions named ``module:function`` (disjoint call trees); what no stage
    claims is reported as ``other`` (runner, coders, I/O glue)."""
    profiler = cProfile.Profile(time.process_time)  # CPU time: other users' load is not ours
    profiler.enable()
    fn()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(tt for (_, _, _), (_, _, tt, _, _) in stats.items())
    out: dict[str, float] = {}
    for stage, names in stages.items():
        seconds = 0.0
        for (path, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.items():
            installed = path.split("site-packages" + os.sep, 1)  # a package's own name
            name = installed[1] if len(installed) == 2 else os.path.relpath(path, REPO)
            module = os.path.splitext(name)[0].replace(os.sep, ".")
            if any(f"{module}:{func}" == name for name in names):
                seconds += ct
        out[stage] = seconds
    out["other"] = max(0.0, total - sum(out.values()))
    out["total"] = total
    return out


def print_breakdown(title: str, columns: dict[str, dict[str, float]]) -> None:
    names = list(next(iter(columns.values())))
    print(f"{title} (cProfile, seconds; 'other' = everything no stage claims)")
    print("  " + f"{'stage':24}" + "".join(f"{c:>14}" for c in columns))
    for stage in names:
        print("  " + f"{stage:24}" + "".join(f"{columns[c][stage]:14.3f}" for c in columns))


def run_script(args: Sequence[str], timeout: float) -> int:
    """Run another benchmark script with this interpreter (used by ``bench_all``)."""
    return subprocess.run([sys.executable, *args], cwd=REPO, timeout=timeout).returncode


def status_bytes(field: str) -> int:
    """A ``/proc/self/status`` memory field (``RssAnon``, ``VmHWM``...) in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _child(queue, fn, args):
    peak = {"anon": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["anon"] = max(peak["anon"], status_bytes("RssAnon"))
            done.wait(0.02)

    threading.Thread(target=sample, daemon=True).start()
    cpu = cpu_seconds()
    try:
        result = fn(*args) or {}
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        queue.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    done.set()
    queue.put({**result, "cpu": cpu_seconds() - cpu, "rss": status_bytes("VmHWM"),
               "anon": max(peak["anon"], status_bytes("RssAnon"))})


def in_fresh_process(fn: Callable, *args) -> dict:
    """``fn(*args)`` (a dict or None) in a spawned process, plus its CPU seconds, peak RSS
    (VmHWM) and peak anonymous memory (RssAnon sampled every 20 ms: file pages the kernel
    can drop, such as memory-mapped index lists, are left out)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{fn.__name__} failed: {result['error']}")
    return result


def start_emulator(state_dir: str) -> tuple[subprocess.Popen, str, str]:
    """``embedpipe emulator`` in its own process over ``state_dir``: (process, URL, key)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = "bench-key"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "emulator", "--port", str(port),
                             "--api-key", key, "--state-dir", state_dir], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{base}/v1beta/models", headers={"x-goog-api-key": key}, timeout=1)
            return proc, base, key
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the emulator did not start")
