"""The run's phases, shared by the CLI commands: prepare → plan → submit/collect → write
→ index → manifest. Each phase reads what the previous one left in the run directory,
so ``run`` (one process) and ``submit``/``status``/``collect`` (split mode) are the
same code in a different order.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline import phases, runners
from pipeline.config import RunConfig, Settings, override_existing_run, validate
from pipeline.jobs import Capacity, JobDriver, plan_waves
from pipeline.ledger import Ledger
from pipeline.run_layout import (
    RunPaths,
    checksum,
    new_run_id,
    read_json,
    read_jsonl_glob,
    write_json,
)
from transforms import fs
from transforms.diff_last_run import PreviousRun
from transforms.plan_requests import RequestFileInfo
from transforms.write_embeddings import ResultSet


class BudgetExceeded(RuntimeError):
    """The plan costs more than ``max_cost_usd``."""


class RunNotApproved(RuntimeError):
    """The run was only planned, or its plan was refused: nothing of it may be submitted."""


@dataclass(frozen=True)
class RunContext:
    settings: Settings
    paths: RunPaths
    beam_args: tuple = ()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def slot_uri(settings: Settings) -> str:
    """The 'active run' slot of this config + sources under the output: a run that has
    not finished holds it, so a rerun (or a concurrent submit) joins that run instead
    of paying for the same chunks again."""
    key = json.dumps([settings.fingerprint(), sorted(settings.config.sources)]).encode()
    return fs.join(settings.config.output, "runs", f"active-{hashlib.sha256(key).hexdigest()[:16]}.json")


def acquire_run(settings: Settings) -> tuple[RunPaths, bool]:
    """(paths, resumed): the unfinished run for this config and sources, or a new one."""
    slot = slot_uri(settings)
    run_id = new_run_id(settings.fingerprint())
    if fs.create_only(slot, json.dumps({"run_id": run_id, "created_at": _now()}).encode()) is None:
        return RunPaths(settings.config.output, read_json(slot)["run_id"]), True
    return RunPaths(settings.config.output, run_id), False


def release_slot(settings: Settings) -> None:
    fs.delete(slot_uri(settings))


PHASES = ("started", "prepared", "written", "done")


def start_run(settings: Settings, paths: RunPaths) -> None:
    write_json(
        paths.run_state,
        {
            "run_id": paths.run_id,
            "created_at": _now(),
            "phase": "started",
            "fingerprint": settings.fingerprint(),
            "config": settings.config.model_dump(mode="json"),
            "config_base_dir": str(settings.base_dir),
        },
    )


def update_run_state(paths: RunPaths, change=None, **fields) -> dict:
    """Set ``fields`` in run.json (and apply ``change(state)``, if given) without losing a
    concurrent process's update (split-mode commands and racing submits share it)."""

    def apply(current: bytes | None) -> bytes:
        state = json.loads(current) if current else {}
        state.update(fields)
        if change is not None:
            change(state)
        return (json.dumps(state, indent=2, sort_keys=True) + "\n").encode()

    return json.loads(fs.read_modify_write(paths.run_state, apply))


def record_phases(ctx: "RunContext", pipeline_phase: str | None = None, tasks: dict | None = None) -> None:
    """Add what this process measured (``phases.clock``) to run.json, and the engine that ran
    ``pipeline_phase`` (prepare, write, index) when one did, with its tasks per worker."""
    measured = phases.clock.drain()
    engine = runners.engine(ctx.settings, list(ctx.beam_args)) if pipeline_phase else None
    if engine and tasks:
        engine["tasks_by_worker"] = tasks

    def change(state: dict) -> None:
        state["phases"] = phases.merge(state.get("phases") or {}, measured)
        if engine:
            state.setdefault("engines", {})[pipeline_phase] = engine

    if measured or engine:
        update_run_state(ctx.paths, change)


def set_phase(paths: RunPaths, phase: str) -> None:
    update_run_state(paths, phase=phase, **{f"{phase}_at": _now()})


def phase_reached(paths: RunPaths, phase: str) -> bool:
    if not fs.exists(paths.run_state):
        return False
    return PHASES.index(read_json(paths.run_state).get("phase", "started")) >= PHASES.index(phase)


def load_run(paths: RunPaths, overrides: list[str] = ()) -> Settings:
    """Settings as the run was started with (split-mode commands need no --config), plus
    command-line overrides of keys that do not change the run's inputs or vectors."""
    state = read_json(paths.run_state)
    base_dir = Path(state["config_base_dir"])
    if not overrides:
        return Settings(RunConfig.model_validate(state["config"]), base_dir)
    return validate(override_existing_run(state["config"], list(overrides)), base_dir)


# -- approval: nothing is submitted without a budget-checked plan of that run ------------
APPROVED, REFUSED, PLAN_ONLY = "approved", "refused", "plan_only"


def approval_of(paths: RunPaths) -> dict:
    if not fs.exists(paths.run_state):
        return {}
    return read_json(paths.run_state).get("approval") or {}


def mark_plan_only(paths: RunPaths) -> None:
    update_run_state(paths, approval={"state": PLAN_ONLY, "at": _now()})


def approve(ctx: "RunContext", plan: dict) -> None:
    """The explicit, budget-checked step before any spend: record the run as approved,
    or as refused (and raise BudgetExceeded) when the plan costs more than max_cost_usd."""
    limit = ctx.settings.config.max_cost_usd
    decision = {
        "estimated_batch_usd": plan["estimated_cost"]["batch_usd"],
        "tokens": plan["tokens_total"],
        "max_cost_usd": limit,
        "at": _now(),
    }
    try:
        check_budget(ctx.settings, plan)
    except BudgetExceeded:
        update_run_state(ctx.paths, approval={"state": REFUSED, **decision})
        raise
    update_run_state(ctx.paths, approval={"state": APPROVED, **decision})


def prepare_approved(ctx: "RunContext") -> dict:
    """Prepare (or reuse) the run's plan and approve it against the budget; over budget,
    the run is recorded as refused and the slot given back, so the next attempt re-lists
    the corpus instead of resuming a run that submitted nothing."""
    plan = prepare(ctx)
    try:
        approve(ctx, plan)
    except BudgetExceeded:
        release_slot(ctx.settings)
        raise
    return plan


def run_to_completion(ctx: "RunContext") -> tuple[dict, dict, int, list[str]]:
    """``embedpipe run`` in one call: prepare, approve, drive every job to its end, write,
    index, manifest. Returns (plan, manifest, exit code, messages for stderr)."""
    from pipeline.backend import open_backend

    plan = prepare_approved(ctx)
    with open_backend(ctx.settings) as client:
        drive_jobs(ctx, client, once=False)
    manifest, code, messages = complete(ctx, plan)
    return plan, manifest, code, messages


def require_approved(ctx: "RunContext") -> None:
    """Every command that may submit (run, submit, status, collect, redrive) passes here:
    a plan-only or refused run is never advanced, and a lower ``max_cost_usd`` given to
    this command refuses the rest of the run."""
    approval = approval_of(ctx.paths)
    state = approval.get("state")
    if state != APPROVED:
        why = {
            PLAN_ONLY: "was made by `embedpipe plan`: a plan only",
            REFUSED: f"was refused: its plan ({usd(approval.get('estimated_batch_usd', 0))}) "
                     f"exceeded max_cost_usd={usd(approval.get('max_cost_usd') or 0)}",
        }.get(state, "has no budget approval")
        raise RunNotApproved(
            f"run {ctx.paths.run_id} {why}; nothing of it is submitted "
            "(fix: embedpipe submit --config FILE (or run) with a max_cost_usd that covers the plan)"
        )
    if fs.exists(ctx.paths.plan):
        check_budget(ctx.settings, read_json(ctx.paths.plan))


def request_files(paths: RunPaths) -> list[RequestFileInfo]:
    if not fs.exists(paths.request_index):
        return []
    return [RequestFileInfo.from_json(d) for d in read_json(paths.request_index)]


def capacity(settings: Settings) -> Capacity:
    c = settings.config
    return Capacity(
        quota_tokens=c.quota.enqueued_tokens,
        max_jobs=min(c.quota.max_concurrent_jobs, settings.limits.concurrent_batch_jobs),
    )


def tolerance_units(row: dict) -> tuple[int, int]:
    """(inputs, failed inputs) one listing row adds to the dead-letter tolerance check:
    an object counts once, failed if anything of it was dead-lettered; a records file
    counts once per row (a bad row is one failed input, the good rows still count)."""
    dead = max(row.get("dead_letters", 0), int(row["status"] == "dead"))
    if row["detected_type"] == "records":
        return max(1, row["chunks"] + dead), dead
    return 1, min(1, dead)


def listing_counts(paths: RunPaths) -> dict:
    statuses: Counter = Counter()
    types: Counter = Counter()
    chunks: Counter = Counter()
    dead_letters = inputs = failed = 0
    for row in read_jsonl_glob(fs.join(paths.listing, "objects*.jsonl")):
        statuses[row["status"]] += 1
        types[row["detected_type"]] += 1
        chunks[row["status"]] += row["chunks"]
        dead_letters += row.get("dead_letters", 0)
        units = tolerance_units(row)
        inputs, failed = inputs + units[0], failed + units[1]
    return {
        "listed": sum(statuses.values()),
        "by_status": dict(statuses),
        "by_type": dict(types),
        "chunks": chunks.get("chunked", 0),
        "unchanged_chunks": chunks.get("unchanged", 0),
        "tombstoned": _count_lines(fs.join(paths.listing, "tombstones*.jsonl")),
        "dead_letters": dead_letters,
        "inputs": inputs,
        "failed_inputs": failed,
    }


def previous_run(settings: Settings, paths: RunPaths) -> PreviousRun | None:
    """The last successful run under the same output, if its vectors are reusable:
    same config fingerprint (model, dimensionality, task, chunker settings)."""
    current = paths.current
    if not fs.exists(current):
        return None
    prev = RunPaths(paths.output, read_json(current)["run_id"])
    if prev.run_id == paths.run_id or read_json(prev.run_state)["fingerprint"] != settings.fingerprint():
        return None
    return PreviousRun(
        run_id=prev.run_id,
        listing_glob=fs.join(prev.listing, "objects*.jsonl"),
        embedding_parts=tuple(p for p, _ in fs.match(fs.join(prev.embeddings, "*.parquet"))),
        deadletter_globs=tuple(
            fs.join(prev.deadletters, f"{stage}*.jsonl") for stage in ("chunk", "collect", "carried")
        ),
    )


def estimate_cost(settings: Settings, tokens_by_modality: dict[str, int]) -> dict:
    prices = settings.pricing[settings.config.model]
    cost = {"batch_usd": 0.0, "interactive_usd": 0.0}
    for modality, tokens in tokens_by_modality.items():
        rate = prices.get(modality) or prices["text"]
        cost["batch_usd"] += tokens / 1e6 * rate["batch"]
        cost["interactive_usd"] += tokens / 1e6 * rate["interactive"]
    return {k: round(v, 6) for k, v in cost.items()}


def write_plan(ctx: RunContext) -> dict:
    files = request_files(ctx.paths)
    tokens: Counter = Counter()
    chunks: Counter = Counter()
    for info in files:
        tokens.update(dict(info.tokens_by_modality))
        chunks.update(dict(info.lines_by_modality))
    waves = plan_waves(files, capacity(ctx.settings))
    plan = {
        "run_id": ctx.paths.run_id,
        "model": ctx.settings.config.model,
        "dimensionality": ctx.settings.config.dimensionality,
        "objects": listing_counts(ctx.paths),
        "chunks_by_modality": dict(chunks),
        "tokens_by_modality": dict(tokens),
        "tokens_total": sum(tokens.values()),
        "request_files": len(files),
        "request_bytes": sum(f.bytes for f in files),
        "waves": len(waves),
        "wave_files": waves,
        "estimated_queue_hours": {
            "typical": len(waves) * ctx.settings.config.quota.expected_job_hours,
            "worst_case": len(waves) * 24.0,
            "why": "each wave must end before the next fits the enqueued-token quota",
        },
        "quota_enqueued_tokens": ctx.settings.config.quota.enqueued_tokens,
        "estimated_cost": estimate_cost(ctx.settings, dict(tokens)),
        "deadletters": _count_lines(fs.join(ctx.paths.deadletters, "chunk*.jsonl")),
    }
    write_json(ctx.paths.plan, plan)
    return plan


def usd(amount: float) -> str:
    """Dollars with enough digits to tell a tiny amount from zero."""
    return f"${amount:,.4f}" if amount >= 0.01 or amount == 0 else f"${amount:.8f}"


def check_budget(settings: Settings, plan: dict) -> None:
    limit = settings.config.max_cost_usd
    cost = plan["estimated_cost"]["batch_usd"]
    if limit is not None and cost > limit:
        raise BudgetExceeded(
            f"estimated batch cost {usd(cost)} for {plan['tokens_total']} tokens exceeds "
            f"max_cost_usd={usd(limit)} (fix: raise max_cost_usd or narrow sources)"
        )


def _count_lines(pattern: str) -> int:
    return sum(1 for _ in read_jsonl_glob(pattern))


def begin_prepare(ctx: RunContext) -> PreviousRun | None:
    """Record the run (if new) and the previous run it diffs against; returns that run."""
    if not fs.exists(ctx.paths.run_state):
        start_run(ctx.settings, ctx.paths)
    previous = previous_run(ctx.settings, ctx.paths)
    update_run_state(ctx.paths, previous_run=previous and previous.run_id)
    return previous


def prepare(ctx: RunContext) -> dict:
    """List, chunk and write request files; then the plan (nothing is submitted).

    A resumed run that already prepared reuses its request files: they are what the
    ledger guards, so re-listing a changed corpus must not replace them mid-run.
    """
    if phase_reached(ctx.paths, "prepared"):
        return read_json(ctx.paths.plan)
    from pipeline import graph

    previous = begin_prepare(ctx)
    runners.announce(ctx.settings, list(ctx.beam_args))
    with runners.worker_tasks(ctx.settings, list(ctx.beam_args)) as tasks:
        windows = graph.run_prepare(ctx.settings, ctx.paths, list(ctx.beam_args), previous)
    plan = write_plan(ctx)
    windows["plan"] = (windows["plan"][0], time.time())
    for name, (start, end) in windows.items():
        phases.clock.add(name, start, end)
    record_phases(ctx, "prepare", tasks)
    set_phase(ctx.paths, "prepared")
    return plan


def job_driver(ctx: RunContext, client) -> JobDriver:
    c = ctx.settings.config
    return JobDriver(client, ctx.paths, request_files(ctx.paths), c.model,
                     capacity(ctx.settings), max_attempts=c.max_attempts)


def drive_jobs(ctx: RunContext, client, *, once: bool) -> JobDriver:
    require_approved(ctx)
    c = ctx.settings.config
    driver = job_driver(ctx, client)
    try:
        driver.drive(c.gemini.poll_interval_s, c.gemini.max_poll_interval_s, once=once,
                     timer=phases.clock.phase)
    finally:
        record_phases(ctx)
    return driver


def result_sets(ctx: RunContext) -> list[ResultSet]:
    """One ResultSet per original request file: its own results and its follow-ups'
    (resubmissions, redrives) in attempt order; a key succeeds if any attempt did."""
    from pipeline.jobs import family_of, key_attempts

    files = request_files(ctx.paths)
    families: dict[str, list] = {}
    for record in Ledger(ctx.paths.ledger).all():
        families.setdefault(family_of(record.request_name), []).append(record)
    sets = []
    for index, info in enumerate(files):
        records = sorted(families.get(info.name, []), key=lambda r: key_attempts(r.request_name))
        results = tuple(
            (fs.join(ctx.paths.results, f"{r.request_name}.jsonl"), r.job_name)
            for r in records
            if r.state == "COLLECTED"
        )
        attempts = max((key_attempts(r.request_name) + r.attempts - 1 for r in records), default=0)
        reason = f"no result line for this key after {attempts} attempt(s)"
        last = records[-1] if records else None
        if last is not None and last.state in {"FAILED", "EXPIRED", "CANCELLED"}:
            what = f"batch job {last.job_name}" if last.job_name else "the job's creation"
            reason = (f"{what} ended {last.state} after {last.attempts} "
                      f"attempt(s): {last.error or 'no reason given'}")
        sets.append(ResultSet(index, len(files), info.name, info.keys_path, results,
                              reason, max(attempts, 1)))
    return sets


def write_embeddings(ctx: RunContext) -> None:
    from pipeline import graph

    runners.announce(ctx.settings, list(ctx.beam_args))
    with runners.worker_tasks(ctx.settings, list(ctx.beam_args)) as tasks, phases.clock.phase("write"):
        graph.run_write(ctx.settings, ctx.paths, result_sets(ctx), extra_args=list(ctx.beam_args))
    record_phases(ctx, "write", tasks)
    set_phase(ctx.paths, "written")


class IndexNotBuilt(RuntimeError):
    """The index of a run with embeddings could not be built (e.g. the recall gate)."""


def build_index(ctx: RunContext, *, requested: bool = False) -> dict:
    """Build the run's index; returns its report (``index/report.json``), or ``{"built":
    False, "reason": ...}`` when there is nothing to index (index disabled — unless
    ``requested`` by the ``index`` command —, or a corpus with no embeddings). An empty
    corpus is a valid run: its index is absent, and ``query`` says so."""
    from pipeline import graph
    from pipeline.query import eval_query_vectors
    from transforms.index import IndexConfig, build_index as build

    ix = ctx.settings.config.index
    if not ix.enabled and not requested:
        return {"built": False, "reason": "index.enabled is false"}
    if embedded_total(ctx.paths) == 0:
        from transforms.index.layout import IndexLayout, delete, match_paths

        delete(match_paths(fs.join(IndexLayout.of_run(ctx.paths.root).root, "**")))
        return {"built": False, "reason": "the run has no embeddings: nothing to index"}
    config = IndexConfig(**ix.model_dump(exclude={"enabled", "eval_queries"}))
    runners.announce(ctx.settings, list(ctx.beam_args))
    options = graph.pipeline_options(ctx.settings, list(ctx.beam_args))
    queries = eval_query_vectors(ctx.settings) if ix.eval_queries else None
    tasks: dict = {}
    try:
        with runners.worker_tasks(ctx.settings, list(ctx.beam_args)) as tasks, phases.clock.phase("index"):
            return build(ctx.paths.root, config, options, eval_queries=queries)
    finally:
        record_phases(ctx, "index", tasks)


def embedded_total(paths: RunPaths) -> int:
    """Rows over the run's embeddings (new and carried), from the Parquet footers."""
    from transforms.index.source import embeddings_glob, inspect_shard, number_shards
    from transforms.index.layout import match_paths

    return sum(inspect_shard(s).rows for s in number_shards(match_paths(embeddings_glob(paths.root))))


def embedded_rows(paths: RunPaths, pattern: str) -> tuple[int, dict[str, int]]:
    """(rows, tokens per modality) over the run's Parquet files matching ``pattern``."""
    import pyarrow.parquet as pq

    rows = 0
    tokens: Counter = Counter()
    for path, _ in fs.match(fs.join(paths.embeddings, pattern)):
        with fs.local_copy(path, suffix=".parquet") as local:
            table = pq.read_table(local, columns=["modality", "token_count"])
        rows += table.num_rows
        for modality, count in zip(
            table.column("modality").to_pylist(), table.column("token_count").to_pylist()
        ):
            tokens[modality] += count or 0
    return rows, dict(tokens)


def job_summary(records) -> dict:
    """Job names, final states, and what was retried (whole jobs and follow-up files)."""
    states = Counter(r.state for r in records)
    return {
        "names": sorted(
            {r.job_name for r in records if r.job_name}
            | {h[0] for r in records for h in r.history if h[0]}
        ),
        "request_files_by_state": dict(states),
        "resubmitted_jobs": sum(len(r.history) for r in records),
        "followup_files": sum(1 for r in records if "-r" in r.request_name),
    }


def finish(ctx: RunContext, plan: dict, index_report: dict) -> tuple[dict, int]:
    """Write manifest.json (last) and current.json; return (manifest, exit code).

    A completed run always becomes current, whatever its dead-letter rate or index
    outcome: its embeddings are good, so the next run carries them and pays only for
    what changed (exit 3 reports the dead letters; it does not throw the rows away)."""
    rows, billed = embedded_rows(ctx.paths, "part-*.parquet")
    carried_rows, _ = embedded_rows(ctx.paths, "carried-*.parquet")
    objects = listing_counts(ctx.paths)
    dead_chunks = _count_lines(fs.join(ctx.paths.deadletters, "collect*.jsonl"))
    dead_objects = objects["by_status"].get("dead", 0)
    outputs = output_checksums(ctx, ("requests", "embeddings", "deadletters", "listing", "index",
                                     "results"))
    c = ctx.settings.config
    state = read_json(ctx.paths.run_state)
    records = Ledger(ctx.paths.ledger).all()
    counts = {
        "listed": objects["listed"],
        "chunked_objects": objects["by_status"].get("chunked", 0),
        "empty_objects": objects["by_status"].get("empty", 0),
        "dead_objects": dead_objects,
        "skipped_objects": objects["by_status"].get("skipped", 0),
        "unchanged": objects["by_status"].get("unchanged", 0),
        "tombstoned": objects["tombstoned"],
        "chunks": objects["chunks"],
        "embedded_rows": rows,
        "prepare_dead_letters": objects["dead_letters"],
        "dead_chunks": dead_chunks,
        "carried_rows": carried_rows,
        "carried_dead_chunks": _count_lines(fs.join(ctx.paths.deadletters, "carried*.jsonl")),
        "inputs": objects["inputs"],
        "failed_inputs": objects["failed_inputs"] + min(dead_chunks, objects["chunks"]),
    }
    manifest = {
        "run_id": ctx.paths.run_id,
        "finished_at": _now(),
        "model": c.model,
        "dimensionality": c.dimensionality,
        "config_fingerprint": ctx.settings.fingerprint(),
        "sources": c.sources,
        "inputs": {"listing": [p for p in outputs if p.startswith("listing/")]},
        "counts": counts,
        "previous_run": state.get("previous_run"),
        "tokens": {
            "planned": plan["tokens_total"],
            "billed": sum(billed.values()),
            "billed_by_modality": billed,
        },
        "cost": {"planned": plan["estimated_cost"], "billed": estimate_cost(ctx.settings, billed)},
        "jobs": job_summary(records),
        "index": _index_summary(index_report),
        "engines": state.get("engines", {}),
        "phases": phases.with_counts(
            state.get("phases", {}),
            phase_counts(plan, records, counts, outputs, index_report),
        ),
        "outputs": outputs,
    }
    counts = manifest["counts"]
    failed, inputs = counts["failed_inputs"], max(1, counts["inputs"])
    manifest["deadletters"] = {
        "failed_inputs": failed,
        "inputs": counts["inputs"],
        "fraction": round(failed / inputs, 6),
        "tolerance": c.deadletter_tolerance,
        "over_tolerance": failed / inputs > c.deadletter_tolerance,
        "path": ctx.paths.deadletters,
    }
    write_json(ctx.paths.manifest, manifest)
    set_phase(ctx.paths, "done")
    write_json(ctx.paths.current, {"run_id": ctx.paths.run_id, "manifest": ctx.paths.manifest})
    release_slot(ctx.settings)
    return manifest, 3 if manifest["deadletters"]["over_tolerance"] else 0


def output_checksums(ctx: RunContext, subfolders) -> dict[str, str]:
    """The run's files under ``subfolders``, by path within the run, with their checksums."""
    root = ctx.paths.root
    return {path[len(root) + 1 :]: checksum(path)
            for sub in subfolders for path, _ in fs.match(fs.join(root, sub, "**"))}


def rebuild_index(ctx: RunContext) -> dict:
    """``embedpipe index``: (re)build a run's index. A finished run's manifest follows
    what is now on disk, also when the new index failed its recall gate."""
    from transforms.index.recall import RecallTargetUnreachable

    try:
        report = build_index(ctx, requested=True)
    except RecallTargetUnreachable as exc:
        refresh_manifest_index(ctx, index_failure(exc))
        raise
    refresh_manifest_index(ctx, report)
    return report


def index_failure(exc: Exception) -> dict:
    """The manifest's index section for an index that could not be built."""
    return {"built": False, "error": f"{type(exc).__name__}: {exc}"}


def refresh_manifest_index(ctx: RunContext, report: dict) -> None:
    """After ``embedpipe index`` on a finished run: its manifest describes the new index
    (summary and the checksums of ``index/``), so it keeps matching the run's files."""
    if not fs.exists(ctx.paths.manifest):
        return
    manifest = read_json(ctx.paths.manifest)
    outputs = {k: v for k, v in manifest["outputs"].items() if not k.startswith("index/")}
    manifest["outputs"] = {**outputs, **output_checksums(ctx, ("index",))}
    manifest["index"] = _index_summary(report)
    manifest["index_rebuilt_at"] = _now()
    write_json(ctx.paths.manifest, manifest)


def phase_counts(plan: dict, records, counts: dict | None = None, outputs: dict | None = None,
                 index_report: dict | None = None) -> dict[str, dict]:
    """What each phase produced, from the run's own records (the plan, the ledger and, once
    written, the manifest counts and outputs), so retries never inflate them."""
    objects = plan["objects"]
    ended = {"COLLECTED", "CANCELLED", "FAILED", "EXPIRED", "SUCCEEDED"}
    out = {
        "list": {"objects": objects["listed"], "unchanged": objects["by_status"].get("unchanged", 0),
                 "tombstoned": objects["tombstoned"]},
        "chunk": {"chunks": objects["chunks"], "chunked_objects": objects["by_status"].get("chunked", 0),
                  "dead_objects": objects["by_status"].get("dead", 0),
                  "empty_objects": objects["by_status"].get("empty", 0)},
        "plan": {"request_files": plan["request_files"], "tokens": plan["tokens_total"],
                 "waves": plan["waves"], "estimated_batch_usd": plan["estimated_cost"]["batch_usd"]},
        "submit": {"jobs_created": sum(bool(r.job_name) + sum(1 for h in r.history if h[0]) for r in records),
                   "resubmitted_jobs": sum(len(r.history) for r in records),
                   "followup_files": sum(1 for r in records if "-r" in r.request_name)},
        "wait": {"jobs_ended": sum(1 for r in records if r.state in ended),
                 "jobs_pending": sum(1 for r in records if r.state not in ended)},
        "collect": {"result_files": sum(1 for r in records if r.state == "COLLECTED")},
    }
    if counts is not None:
        out["write"] = {"rows": counts["embedded_rows"], "dead_chunks": counts["dead_chunks"],
                        "carried_rows": counts["carried_rows"],
                        "parts": sum(1 for p in outputs or {} if p.startswith("embeddings/part-"))}
    if index_report is not None:
        out["index"] = {"built": index_report.get("built") is not False, "vectors": index_report.get("n") or 0}
    return out


STATUS_SCHEMA = "embedpipe.status/1"


def status_report(ctx: RunContext, driver: JobDriver) -> dict:
    """``embedpipe status --json``: what a sensor or a dashboard needs, in one object (a
    superset of plain ``status``'s ``run_id``/``jobs``/``pending``; see the README)."""
    state = read_json(ctx.paths.run_state)
    plan = read_json(ctx.paths.plan)
    records = Ledger(ctx.paths.ledger).all()
    by_state = driver.summary()
    pending = driver.pending()
    billed = sum(r.billed_tokens for r in records if r.state == "COLLECTED")
    return {
        "schema": STATUS_SCHEMA,
        "run_id": ctx.paths.run_id,
        "run_dir": ctx.paths.root,
        "jobs": by_state,
        "pending": pending,
        "phase": state.get("phase"),
        "approval": state.get("approval") or {},
        "request_files": {"total": sum(by_state.values()), "by_state": by_state,
                          "waves_planned": plan["waves"]},
        "tokens": {"planned": plan["tokens_total"],
                   "submitted": sum(r.est_tokens for r in records if r.job_name or r.history),
                   "billed_so_far": billed},
        "estimated_cost_usd": plan["estimated_cost"],
        "jobs_summary": job_summary(records),
        "phases": phases.with_counts(state.get("phases", {}), phase_counts(plan, records)),
        "engines": state.get("engines", {}),
        "manifest": ctx.paths.manifest if fs.exists(ctx.paths.manifest) else None,
    }


def _index_summary(report: dict) -> dict:
    """The manifest's index section: a built index's key figures, or why there is none."""
    if report.get("built") is False:
        return {k: report[k] for k in ("built", "reason", "error") if k in report}
    return {"built": True, "ntotal": report.get("n"), "nprobe": report.get("chosen_nprobe"),
            **{k: report.get(k) for k in ("factory", "nlist", "recall")}}


def deadletter_message(ctx: RunContext, manifest: dict) -> str:
    """Why a run exits 3, for stderr: counts, tolerance, where the dead letters are."""
    d = manifest["deadletters"]
    return (
        f"run {ctx.paths.run_id}: {d['failed_inputs']} of {d['inputs']} input(s) dead-lettered "
        f"({d['fraction']:.2%}) exceed deadletter_tolerance={d['tolerance']:.2%}; "
        f"see {d['path']} (error_class and message per line). The run's "
        f"{manifest['counts']['embedded_rows'] + manifest['counts']['carried_rows']} embeddings "
        "are kept and carried into the next run; fix or remove the inputs, raise "
        "deadletter_tolerance, or `embedpipe redrive` the collect-stage ones"
    )


def complete(ctx: RunContext, plan: dict) -> tuple[dict, int, list[str]]:
    """Write embeddings, build the index, write the manifest: (manifest, exit code, messages).

    An index that cannot be built (e.g. its recall gate) does not lose the billed
    embeddings: the manifest is still written, the run becomes current, and the exit
    code is 1 with the reason and the fix."""
    from transforms.embeddings_schema import SchemaMismatchError
    from transforms.index.recall import RecallTargetUnreachable

    write_embeddings(ctx)
    messages = []
    try:
        report = build_index(ctx)
    except (RecallTargetUnreachable, SchemaMismatchError) as exc:
        report = index_failure(exc)
        messages.append(
            f"run {ctx.paths.run_id}: the index was not built ({exc}); the embeddings are "
            f"written and the run is current (fix: embedpipe index --output {ctx.paths.output} "
            f"--run {ctx.paths.run_id} --set index.target_recall_at_10=<lower> or "
            "--set index.nprobe=<n>)"
        )
    manifest, code = finish(ctx, plan, report)
    if code == 3:
        messages.append(deadletter_message(ctx, manifest))
    return manifest, (1 if "error" in report else code), messages


def summary_text(plan: dict, manifest: dict) -> str:
    counts = manifest["counts"]
    cost = plan["estimated_cost"]
    return json.dumps(
        {
            "documents": counts["listed"],
            "unchanged_documents": counts["unchanged"],
            "deleted_documents": counts["tombstoned"],
            "chunks": counts["chunks"],
            "embedded": counts["embedded_rows"],
            "carried_from_previous_run": counts["carried_rows"],
            "dead_letters": counts["prepare_dead_letters"] + counts["dead_chunks"],
            "tokens": manifest["tokens"],
            "cost_usd": {"batch": cost["batch_usd"], "interactive": cost["interactive_usd"]},
        },
        indent=2,
    )
