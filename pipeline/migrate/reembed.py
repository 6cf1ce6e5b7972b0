"""``migrate run``: re-embed a stratified subset (``--fraction``) or all of the legacy rows
with the target model, through the normal exactly-once Batch path, into the shadow index.

The selected rows are materialised (``sample.py``) and become the sources of an ordinary
run under ``<output>/migration/shadow``: the same phases ``embedpipe run`` calls
(prepare → budget check → batch jobs under the ledger → embeddings → index → manifest), so
budgets, waves, resubmission, resumability and incremental reruns all apply. A later pass
over a larger fraction diffs against the previous shadow run: materialised files are
unchanged, their rows are carried, only the new rows are paid for. An unfinished shadow
run (a crash, a killed Airflow task) is finished first, so nothing it submitted is paid
for twice. Each finished run gets a ``legacy_ids/<run id>.parquet`` map (chunk_id →
legacy_id) so downstream systems can join.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.migrate.config import Migration
from pipeline.migrate.layout import MigrationPaths
from pipeline.migrate.sample import (
    materialised_records,
    missing_objects,
    object_uris,
    read_rows,
    selection,
    text_records,
    write_records,
)
from pipeline.migrate.state import now, write_state
from pipeline.run import RunContext, acquire_run, load_run, run_to_completion, summary_text
from pipeline.run_layout import RunPaths, read_json
from transforms import fs

MAP_SCHEMA = pa.schema([
    pa.field("chunk_id", pa.string(), nullable=False),
    pa.field("legacy_id", pa.string(), nullable=False),
    pa.field("group", pa.string(), nullable=False),
])


def run_phases(ctx: RunContext) -> tuple[dict, dict, int]:
    """One complete run, exactly as ``embedpipe run`` makes it (budget approval included):
    (plan, manifest, exit code); its messages go to stderr."""
    plan, manifest, code, messages = run_to_completion(ctx)
    for message in messages:
        print(f"embedpipe: {message}", file=sys.stderr)
    return plan, manifest, code


def legacy_run(state: dict) -> RunPaths:
    return RunPaths(state["legacy"]["output"], state["legacy"]["run_id"])


def write_legacy_map(paths: MigrationPaths, run: RunPaths, rows: pa.Table) -> set[str]:
    """``legacy_ids/<run id>.parquet``: every chunk of the run with its legacy id(s) and the
    group both indexes are compared on. Returns the legacy ids the run covers."""
    records = materialised_records(paths)
    group_of = dict(zip(rows.column("legacy_id").to_pylist(), rows.column("group").to_pylist()))
    by_object_group: dict[str, list[str]] = {}
    for legacy_id, unit, group in zip(rows.column("legacy_id").to_pylist(),
                                      rows.column("unit").to_pylist(), rows.column("group").to_pylist()):
        if unit.startswith("o:"):
            by_object_group.setdefault(group, []).append(legacy_id)
    out = {f.name: [] for f in MAP_SCHEMA}
    for path, _ in fs.match(fs.join(run.embeddings, "*.parquet")):
        with fs.open_read(path) as fh:
            table = pq.read_table(fh, columns=["chunk_id", "source_uri"])
        for chunk_id, uri in zip(table.column("chunk_id").to_pylist(), table.column("source_uri").to_pylist()):
            legacy_ids = [records[uri]] if uri in records else by_object_group.get(uri, [])
            for legacy_id in legacy_ids:
                out["chunk_id"].append(chunk_id)
                out["legacy_id"].append(legacy_id)
                out["group"].append(group_of[legacy_id])
    with fs.open_write(paths.legacy_ids(run.run_id)) as fh:
        pq.write_table(pa.Table.from_pydict(out, schema=MAP_SCHEMA), fh)
    return set(out["legacy_id"])


def _record_run(paths: MigrationPaths, state: dict, run: RunPaths, rows: pa.Table, plan: dict,
                manifest: dict, code: int, fraction: float | None, seconds: float) -> dict:
    covered = write_legacy_map(paths, run, rows)
    entry = {
        "run_id": run.run_id,
        "output": run.output,
        "fraction": fraction,
        "sources": read_json(run.run_state)["config"]["sources"],
        "exit_code": code,
        "finished_at": now(),
        "seconds": round(seconds, 3),
        "tokens": manifest["tokens"],
        "cost_usd": {"planned": plan["estimated_cost"], "billed": manifest["cost"]["billed"]},
        "covered_rows": len(covered),
        "coverage": round(len(covered) / max(state["legacy"]["imported"], 1), 6),
        "legacy_ids": paths.legacy_ids(run.run_id),
        "index": run.index,
    }
    state["runs"].append(entry)
    write_state(paths, state)
    return entry


def finish_unfinished(paths: MigrationPaths, state: dict, rows: pa.Table, beam_args) -> list[dict]:
    """Complete any shadow run a crash left holding its slot (its jobs may be running)."""
    finished = []
    for slot, _ in fs.match(fs.join(paths.shadow_output, "runs", "active-*.json")):
        run = RunPaths(paths.shadow_output, read_json(slot)["run_id"])
        if not fs.exists(run.run_state):  # died before the run existed: nothing was submitted
            fs.delete(slot)
            continue
        started = time.perf_counter()
        plan, manifest, code = run_phases(RunContext(load_run(run), run, tuple(beam_args)))
        finished.append(_record_run(paths, state, run, rows, plan, manifest, code, None,
                                    time.perf_counter() - started))
    return finished


def last_run(state: dict) -> dict | None:
    return state["runs"][-1] if state["runs"] else None


def reembed(paths: MigrationPaths, state: dict, migration: Migration, fraction: float,
            beam_args=()) -> tuple[dict, int]:
    """Re-embed the stratified ``fraction`` of the legacy rows; (summary, exit code)."""
    started = time.perf_counter()
    rows = read_rows(legacy_run(state))
    resumed = finish_unfinished(paths, state, rows, beam_args)
    chosen = selection(rows, fraction)
    done = set(materialised_records(paths).values())
    target = migration.run_settings(output=paths.shadow_output)
    created = write_records(paths, text_records(rows, chosen, done, migration, target.limits.text_byte_budget),
                            migration.settings.rows_per_file)
    state["object_uris"] = sorted(set(state.get("object_uris", [])) | set(object_uris(chosen)))
    present, missing = missing_objects(state["object_uris"])
    if missing:
        fs.write_bytes(fs.join(paths.deadletters, "missing-sources.jsonl"), "".join(
            json.dumps(dataclasses.asdict(d), sort_keys=True) + "\n" for d in missing).encode())
    has_records = bool(fs.match(fs.join(paths.source, "rows-*.jsonl")))
    sources = ([paths.source] if has_records else []) + present
    previous = last_run(state)
    base = {"fraction": fraction, "selected_units": len(chosen), "new_records_files": len(created),
            "missing_sources": len(missing), "resumed_runs": [r["run_id"] for r in resumed]}
    if previous is not None and previous["sources"] == sources and not created and previous["exit_code"] == 0:
        return {**base, "up_to_date": True, "run_id": previous["run_id"], "coverage": previous["coverage"],
                "covered_rows": previous["covered_rows"], "index": previous["index"],
                "tokens": {"planned": 0, "billed": 0, "billed_by_modality": {}},
                "cost_usd": {"batch": 0.0, "interactive": 0.0}}, 0
    settings = migration.run_settings(output=paths.shadow_output, sources=sources)
    run, _ = acquire_run(settings)
    plan, manifest, code = run_phases(RunContext(settings, run, tuple(beam_args)))
    entry = _record_run(paths, state, run, rows, plan, manifest, code, fraction,
                        time.perf_counter() - started)
    summary = json.loads(summary_text(plan, manifest))
    return {**base, **summary, "up_to_date": False, "run_id": run.run_id, "index": run.index,
            "coverage": entry["coverage"], "covered_rows": entry["covered_rows"],
            "legacy_ids": entry["legacy_ids"]}, code
