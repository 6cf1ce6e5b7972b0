"""``migrate plan``: what re-embedding costs, before any spend.

For the full re-embedding and for a subset (``--fraction``, default
``migration.subset_fraction``): rows, chunks and tokens per modality, the cost at batch and
at interactive price, request files and the queue estimate in waves (each wave must end
before the next fits the enqueued-token quota) — both for everything in scope and for
what is still to pay (rows a finished shadow run already embedded are not paid again).

Text rows are priced exactly as the records chunker will price them (the translated
prompt plus the text, split where the run would split it); objects given by source_uri
are cut by the normal chunkers in this process (no API call), so their estimate is the
run's own. ``max_cost_usd`` applies to what the requested option still has to pay: over
it, ``plan`` exits 2 (and ``migrate run`` would refuse the same way before submitting).
"""
from __future__ import annotations

import math
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Settings
from pipeline.migrate.config import Migration
from pipeline.migrate.layout import MigrationPaths
from pipeline.migrate.reembed import last_run, legacy_run
from pipeline.migrate.sample import object_uris, read_rows, record_rows, selection
from pipeline.run import capacity, estimate_cost
from pipeline.run_layout import write_json
from transforms import fs
from transforms.chunk import route
from transforms.chunk_errors import ChunkingError
from transforms.list_sources import describe, expand_pattern
from transforms.tokens import estimate_text_tokens


def covered_units(paths: MigrationPaths, state: dict, rows: pa.Table) -> set[str]:
    """Units the latest finished shadow run embedded (nothing to pay for them again)."""
    run = last_run(state)
    if run is None:
        return set()
    with fs.open_read(paths.legacy_ids(run["run_id"])) as fh:
        covered = set(pq.read_table(fh, columns=["legacy_id"]).column("legacy_id").to_pylist())
    return {u for i, u in zip(rows.column("legacy_id").to_pylist(), rows.column("unit").to_pylist())
            if i in covered}


class Estimator:
    """Token and chunk counts of units, objects chunked once per plan."""

    def __init__(self, rows: pa.Table, migration: Migration, settings: Settings):
        self.rows = rows.to_pylist()
        self.migration = migration
        self.settings = settings
        self._objects: dict[str, tuple[Counter, Counter, str | None]] = {}

    def _object(self, uri: str) -> tuple[Counter, Counter, str | None]:
        if uri not in self._objects:
            tokens, chunks, problem = Counter(), Counter(), None
            try:
                listed = next(expand_pattern(uri), None)
                if listed is None:
                    raise FileNotFoundError(uri)
                for item in route(describe(listed), self.settings.chunk_settings()):
                    if not isinstance(item, ChunkingError):
                        tokens[item.modality] += item.est_tokens
                        chunks[item.modality] += 1
            except FileNotFoundError:
                problem = "missing_source"
            except ChunkingError as exc:
                problem = exc.error_class
            self._objects[uri] = (tokens, chunks, problem)
        return self._objects[uri]

    def estimate(self, units: set[str]) -> dict:
        tokens: Counter = Counter()
        chunks: Counter = Counter()
        problems: Counter = Counter()
        budget = self.settings.limits.text_byte_budget
        rows = 0
        for row in self.rows:
            if row["unit"] not in units:
                continue
            rows += 1
            if row["unit"].startswith("t:"):
                prefix = self.migration.task_types.document_prefix(row["task_type"], row["title"])
                for record in record_rows(row["legacy_id"], row["text"], prefix, budget):
                    tokens["records"] += estimate_text_tokens(prefix + record["text"])
                    chunks["records"] += 1
        for uri in object_uris(units):
            t, c, problem = self._object(uri)
            tokens.update(t)
            chunks.update(c)
            if problem:
                problems[problem] += 1
        return {
            "units": len(units),
            "legacy_rows": rows,
            "chunks": sum(chunks.values()),
            "chunks_by_modality": dict(chunks),
            "tokens_by_modality": dict(tokens),
            "tokens_total": sum(tokens.values()),
            "estimated_cost": estimate_cost(self.settings, dict(tokens)),
            **queue_estimate(sum(tokens.values()), sum(chunks.values()), self.settings),
            "unplannable_objects": dict(problems),
        }


def queue_estimate(tokens: int, chunks: int, settings: Settings) -> dict:
    """Request files and waves as PlanRequests and the wave planner would make them."""
    c = settings.config
    per_file = c.requests.max_tokens_per_file or c.quota.enqueued_tokens
    files = max(math.ceil(chunks / c.requests.max_lines_per_file), math.ceil(tokens / per_file)) if chunks else 0
    cap = capacity(settings)
    waves = max(math.ceil(tokens / cap.quota_tokens), math.ceil(files / cap.max_jobs)) if files else 0
    return {
        "request_files": files,
        "waves": waves,
        "estimated_queue_hours": {
            "typical": waves * c.quota.expected_job_hours,
            "worst_case": waves * 24.0,
            "why": "each wave must end before the next fits the enqueued-token quota",
        },
    }


def plan_migration(paths: MigrationPaths, state: dict, migration: Migration,
                   fraction: float | None) -> tuple[dict, bool]:
    """(plan, within budget) for the full re-embedding and the subset; writes plan.json."""
    rows = read_rows(legacy_run(state))
    settings = migration.run_settings(output=paths.shadow_output)
    estimator = Estimator(rows, migration, settings)
    covered = covered_units(paths, state, rows)
    subset_fraction = fraction if fraction is not None else migration.settings.subset_fraction
    options = {}
    for name, share in (("full", 1.0), ("subset", subset_fraction)):
        units = selection(rows, share)
        options[name] = {"fraction": share, "all": estimator.estimate(units),
                         "to_pay": estimator.estimate(units - covered)}
    requested = "subset" if fraction is not None and fraction < 1.0 else "full"
    limit = settings.config.max_cost_usd
    cost = options[requested]["to_pay"]["estimated_cost"]["batch_usd"]
    plan = {
        "model": settings.config.model,
        "dimensionality": settings.config.dimensionality,
        "legacy_rows": state["legacy"]["imported"],
        "already_embedded_units": len(covered),
        **options,
        "requested": requested,
        "max_cost_usd": limit,
        "within_budget": limit is None or cost <= limit,
        "prices_per_million_tokens": settings.pricing[settings.config.model],
        "task_types_version": migration.task_types.version,
        "quota_enqueued_tokens": settings.config.quota.enqueued_tokens,
    }
    write_json(paths.plan, plan)
    return plan, plan["within_budget"]
