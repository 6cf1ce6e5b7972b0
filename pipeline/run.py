"""The run's phases, shared by the CLI commands: prepare → plan → submit/collect → write
→ index → manifest. Each phase reads what the previous one left in the run directory,
so ``run`` (one process) and ``submit``/``status``/``collect`` (split mode) are the
same code in a different order.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from dataclasses import dataclass

from pipeline import graph
from pipeline.config import ConfigError, RunConfig, Settings
from pipeline.jobs import Capacity, JobDriver, plan_waves
from pipeline.run_layout import RunPaths, checksum, read_json, read_jsonl_glob, write_json
from transforms import fs
from transforms.plan_requests import RequestFileInfo
from transforms.write_embeddings import ResultSet


class BudgetExceeded(RuntimeError):
    """The plan costs more than ``max_cost_usd``."""


@dataclass(frozen=True)
class RunContext:
    settings: Settings
    paths: RunPaths
    beam_args: tuple = ()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def validate_sources(settings: Settings) -> None:
    if not settings.config.sources:
        raise ConfigError("sources: at least one source URI is required (fix: --sources DIR)")
    for src in settings.config.sources:
        if fs.is_remote(src) or any(ch in src for ch in "*?["):
            continue
        if not os.path.exists(os.path.expanduser(src)):
            raise ConfigError(f"sources: {src!r} does not exist")


def start_run(settings: Settings, paths: RunPaths) -> None:
    write_json(
        paths.run_state,
        {
            "run_id": paths.run_id,
            "created_at": _now(),
            "fingerprint": settings.fingerprint(),
            "config": settings.config.model_dump(mode="json"),
            "config_base_dir": str(settings.base_dir),
        },
    )


def load_run(paths: RunPaths) -> Settings:
    """Settings exactly as the run was started with (split-mode commands need no --config)."""
    from pathlib import Path

    state = read_json(paths.run_state)
    return Settings(RunConfig.model_validate(state["config"]), Path(state["config_base_dir"]))


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


def listing_counts(paths: RunPaths) -> dict:
    statuses: Counter = Counter()
    types: Counter = Counter()
    chunks = 0
    for row in read_jsonl_glob(fs.join(paths.listing, "objects*.jsonl")):
        statuses[row["status"]] += 1
        types[row["detected_type"]] += 1
        chunks += row["chunks"]
    return {
        "listed": sum(statuses.values()),
        "by_status": dict(statuses),
        "by_type": dict(types),
        "chunks": chunks,
    }


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
        "quota_enqueued_tokens": ctx.settings.config.quota.enqueued_tokens,
        "estimated_cost": estimate_cost(ctx.settings, dict(tokens)),
        "deadletters": _count_lines(fs.join(ctx.paths.deadletters, "chunk*.jsonl")),
    }
    write_json(ctx.paths.plan, plan)
    return plan


def check_budget(settings: Settings, plan: dict) -> None:
    limit = settings.config.max_cost_usd
    cost = plan["estimated_cost"]["batch_usd"]
    if limit is not None and cost > limit:
        raise BudgetExceeded(
            f"estimated batch cost ${cost:.4f} for {plan['tokens_total']} tokens exceeds "
            f"max_cost_usd=${limit:.4f} (fix: raise max_cost_usd or narrow sources)"
        )


def _count_lines(pattern: str) -> int:
    return sum(1 for _ in read_jsonl_glob(pattern))


def prepare(ctx: RunContext) -> dict:
    """List, chunk and write request files; then the plan (nothing is submitted)."""
    validate_sources(ctx.settings)
    start_run(ctx.settings, ctx.paths)
    graph.run_prepare(ctx.settings, ctx.paths, list(ctx.beam_args))
    return write_plan(ctx)


def drive_jobs(ctx: RunContext, client, *, once: bool) -> dict[str, int]:
    c = ctx.settings.config
    driver = JobDriver(client, ctx.paths, request_files(ctx.paths), c.model, capacity(ctx.settings))
    return driver.drive(c.gemini.poll_interval_s, c.gemini.max_poll_interval_s, once=once)


def jobs_pending(ctx: RunContext, client) -> bool:
    c = ctx.settings.config
    return JobDriver(
        client, ctx.paths, request_files(ctx.paths), c.model, capacity(ctx.settings)
    ).pending()


def result_sets(ctx: RunContext) -> list[ResultSet]:
    from pipeline.ledger import Ledger

    files = request_files(ctx.paths)
    records = {r.request_name: r for r in Ledger(ctx.paths.ledger).all()}
    sets = []
    for index, info in enumerate(files):
        record = records.get(info.name)
        results = ()
        if record is not None and record.state == "COLLECTED":
            results = ((fs.join(ctx.paths.results, f"{info.name}.jsonl"), record.job_name),)
        reason = "no result line for this key"
        if record is not None and record.state in {"FAILED", "EXPIRED", "CANCELLED"}:
            reason = f"batch job {record.job_name} ended {record.state}: {record.error or ''}".strip()
        sets.append(ResultSet(index, len(files), info.name, info.keys_path, results, reason))
    return sets


def write_embeddings(ctx: RunContext) -> None:
    graph.run_write(ctx.settings, ctx.paths, result_sets(ctx), attempts=1,
                    extra_args=list(ctx.beam_args))


def build_index(ctx: RunContext) -> dict | None:
    from transforms.index import IndexConfig, build_index as build

    ix = ctx.settings.config.index
    if not ix.enabled:
        return None
    config = IndexConfig(**ix.model_dump(exclude={"enabled"}))
    options = graph.pipeline_options(ctx.settings, list(ctx.beam_args))
    return build(ctx.paths.embeddings, ctx.paths.index, config, options)


def embedded_rows(paths: RunPaths) -> tuple[int, dict[str, int]]:
    """(rows, billed tokens per modality) over the run's Parquet parts."""
    import pyarrow.parquet as pq

    rows = 0
    tokens: Counter = Counter()
    for path, _ in fs.match(fs.join(paths.embeddings, "part-*.parquet")):
        with fs.local_copy(path, suffix=".parquet") as local:
            table = pq.read_table(local, columns=["modality", "token_count"])
        rows += table.num_rows
        for modality, count in zip(
            table.column("modality").to_pylist(), table.column("token_count").to_pylist()
        ):
            tokens[modality] += count or 0
    return rows, dict(tokens)


def finish(ctx: RunContext, plan: dict, index_report: dict | None) -> tuple[dict, int]:
    """Write manifest.json (last) and current.json; return (manifest, exit code)."""
    from pipeline.ledger import Ledger

    rows, billed = embedded_rows(ctx.paths)
    objects = listing_counts(ctx.paths)
    dead_chunks = _count_lines(fs.join(ctx.paths.deadletters, "collect*.jsonl"))
    dead_objects = objects["by_status"].get("dead", 0)
    outputs = {}
    for sub in ("requests", "embeddings", "deadletters", "listing", "index", "results"):
        for path, _ in fs.match(fs.join(ctx.paths.root, sub, "**")):
            outputs[path[len(ctx.paths.root) + 1 :]] = checksum(path)
    c = ctx.settings.config
    manifest = {
        "run_id": ctx.paths.run_id,
        "finished_at": _now(),
        "model": c.model,
        "dimensionality": c.dimensionality,
        "config_fingerprint": ctx.settings.fingerprint(),
        "sources": c.sources,
        "inputs": {"listing": [p for p in outputs if p.startswith("listing/")]},
        "counts": {
            "listed": objects["listed"],
            "chunked_objects": objects["by_status"].get("chunked", 0),
            "empty_objects": objects["by_status"].get("empty", 0),
            "dead_objects": dead_objects,
            "unchanged": 0,
            "tombstoned": 0,
            "chunks": objects["chunks"],
            "embedded_rows": rows,
            "dead_chunks": dead_chunks,
        },
        "tokens": {
            "planned": plan["tokens_total"],
            "billed": sum(billed.values()),
            "billed_by_modality": billed,
        },
        "cost": {"planned": plan["estimated_cost"], "billed": estimate_cost(ctx.settings, billed)},
        "jobs": sorted(r.job_name for r in Ledger(ctx.paths.ledger).all() if r.job_name),
        "index": index_report and {
            k: index_report.get(k) for k in ("factory", "nlist", "nprobe", "ntotal", "recall")
        },
        "outputs": outputs,
    }
    write_json(ctx.paths.manifest, manifest)
    listed = max(1, objects["listed"])
    failed_fraction = (dead_objects + min(dead_chunks, objects["chunks"])) / listed
    exit_code = 3 if failed_fraction > c.deadletter_tolerance else 0
    if exit_code == 0:
        write_json(ctx.paths.current, {"run_id": ctx.paths.run_id, "manifest": ctx.paths.manifest})
    return manifest, exit_code


def summary_text(plan: dict, manifest: dict) -> str:
    counts = manifest["counts"]
    cost = plan["estimated_cost"]
    return json.dumps(
        {
            "documents": counts["listed"],
            "chunks": counts["chunks"],
            "embedded": counts["embedded_rows"],
            "dead_letters": counts["dead_objects"] + counts["dead_chunks"],
            "tokens": manifest["tokens"],
            "cost_usd": {"batch": cost["batch_usd"], "interactive": cost["interactive_usd"]},
        },
        indent=2,
    )
