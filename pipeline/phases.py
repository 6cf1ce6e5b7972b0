"""Per-phase wall times of a run, for the manifest and ``status --json`` (a DAG charts them).

Phases: ``list``, ``chunk``, ``plan`` (one Beam pipeline: stages of it overlap), ``submit``,
``wait``, ``collect`` (the job driver's passes), ``write`` and ``index`` (one pipeline
each). In split mode they happen in different processes (``submit``, every ``status``,
``collect``), so each process adds what it measured to ``run.json`` (compare-and-set, no
update lost) and the manifest copies the total.

Per phase: ``started_at`` / ``ended_at`` (UTC, first entry and last exit over all
processes: the bar to chart), ``seconds`` (time embedpipe processes spent in it, summed)
and ``passes`` (how many times a process entered it). For ``wait`` the bar is the real
wait (a scheduler may have waited between two ``status`` calls); ``seconds`` only counts
embedpipe's own polling and sleeping.

Inside the prepare pipeline, list/chunk/plan are timed from Beam distribution metrics of
when elements leave each stage: a stage runs from when its first input is available to
when its last output is out (``list`` from the pipeline start). A runner without metrics
leaves all three as one window: list = the pipeline, chunk and plan empty at its end.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import time

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

NAMES = ("list", "chunk", "plan", "submit", "wait", "collect", "write", "index")
STAGE_NAMESPACE = "embedpipe.stage"


class MarkStage(beam.DoFn):
    """Pass elements through, recording when each left ``stage`` (ms since the epoch).

    The distribution handle is made once per DoFn instance, not per element: making one
    costs more than the update, and the list and chunk clocks see every object."""

    def __init__(self, stage: str):
        self._name = f"{stage}_out_ms"

    def setup(self):
        self._left = beam.metrics.Metrics.distribution(STAGE_NAMESPACE, self._name)

    def process(self, element):
        self._left.update(int(time.time() * 1000))
        yield element


def stage_windows(result, started: float, ended: float) -> dict[str, tuple[float, float]]:
    """(start, end) epoch seconds of list, chunk and plan within one prepare pipeline that
    ran from ``started`` to ``ended`` (see the module docstring)."""
    marks = {}
    try:
        for dist in result.metrics().query(MetricsFilter().with_namespace(STAGE_NAMESPACE))["distributions"]:
            data = dist.committed or dist.attempted
            if data is not None and data.count:
                marks[dist.key.metric.name.removesuffix("_out_ms")] = (data.min / 1000, data.max / 1000)
    except (NotImplementedError, AttributeError, KeyError):
        marks = {}

    def clamp(t: float) -> float:
        return min(max(t, started), ended)

    list_end = clamp(marks["list"][1]) if "list" in marks else ended
    chunk_start = clamp(marks["list"][0]) if "list" in marks else list_end
    chunk_end = clamp(marks["chunk"][1]) if "chunk" in marks else max(chunk_start, list_end)
    plan_start = clamp(marks["chunk"][0]) if "chunk" in marks else chunk_end
    return {"list": (started, list_end), "chunk": (chunk_start, chunk_end), "plan": (plan_start, ended)}


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="milliseconds")


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


class PhaseClock:
    """What this process measured, phase by phase, until it is added to run.json."""

    def __init__(self):
        self._segments: dict[str, list[float]] = {}  # name → [start, end, seconds, passes]

    def add(self, name: str, start: float, end: float) -> None:
        if name not in NAMES:
            raise ValueError(f"unknown phase {name!r}")
        seg = self._segments.setdefault(name, [start, end, 0.0, 0])
        seg[0], seg[1] = min(seg[0], start), max(seg[1], end)
        seg[2] += max(0.0, end - start)
        seg[3] += 1

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.time()
        try:
            yield
        finally:
            self.add(name, start, time.time())

    def drain(self) -> dict[str, dict]:
        """The measured segments as phase records; the clock starts empty again."""
        out = {
            name: {"started_at": _iso(s), "ended_at": _iso(e), "seconds": round(secs, 3), "passes": n}
            for name, (s, e, secs, n) in self._segments.items()
        }
        self._segments = {}
        return out


def merge(total: dict, more: dict) -> dict:
    """Phase records of several processes combined (bars widen, seconds and passes add)."""
    merged = {name: dict(rec) for name, rec in total.items()}
    for name, rec in more.items():
        have = merged.get(name)
        if have is None:
            merged[name] = dict(rec)
            continue
        have["started_at"] = _iso(min(_epoch(have["started_at"]), _epoch(rec["started_at"])))
        have["ended_at"] = _iso(max(_epoch(have["ended_at"]), _epoch(rec["ended_at"])))
        have["seconds"] = round(have["seconds"] + rec["seconds"], 3)
        have["passes"] += rec["passes"]
    return {name: merged[name] for name in NAMES if name in merged}


def with_counts(records: dict, counts: dict[str, dict]) -> dict:
    """Phase records in pipeline order, each with the counts of what it produced; phases
    that did not happen (nothing to submit, index disabled) are absent."""
    return {name: {**records[name], "counts": counts.get(name, {})} for name in NAMES if name in records}


clock = PhaseClock()
"""This process's clock (the CLI runs one command per process)."""
