"""``migrate evaluate``: the A/B report of the legacy and the shadow index on the user's
queries (``{"query": …, "relevant_ids": [legacy ids]}`` per line, labels optional).

Each query is embedded with each model's own conventions — gemini-embedding-001: the raw
text with ``taskType`` = ``migration.query_task_type``; the new model: that task type's
prompt from the pinned mapping — and searched in the index bound to that model (the
searcher refuses any other space). Both sides are compared on the same population: when
the shadow index covers a subset, the legacy side is searched in a legacy index of the
same rows (built once with the same builder), and labels outside it are dropped.

Hits are compared by *group*: the legacy id for rows re-embedded from their text (1:1),
the source uri for rows re-embedded from their object (its chunks and its legacy rows all
share it). Query vectors are cached per model, so rerunning the evaluation (e.g. after a
config change) pays for no query twice.

Report: recall@k, nDCG@k and MRR@k per side (labelled queries); overlap@k and Spearman rank
correlation between sides per query; score distributions and the score-threshold map;
the queries whose results changed most, with both result lists; cost and time. Written to
``evaluation/<shadow run>/`` (report.json, queries.jsonl, PNG plots) and copied to
``migration/report.json``, which ``cutover`` gates on.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.backend import open_backend
from pipeline.config import ConfigError, Settings
from pipeline.migrate import metrics
from pipeline.migrate.config import LEGACY_MODEL, Migration
from pipeline.migrate.cutover import gate_check
from pipeline.migrate.layout import MigrationPaths
from pipeline.migrate.plots import write_plots
from pipeline.migrate.reembed import last_run, legacy_run
from pipeline.migrate.sample import read_rows
from pipeline.migrate.state import now, write_state
from pipeline.run import RunContext, build_index, load_run, set_phase, start_run
from pipeline.run_layout import RunPaths, write_json
from transforms import fs
from transforms.index.layout import IndexLayout
from transforms.index.search import IndexSearcher
from transforms.prompts import QueryConvention
from transforms.tabular import iter_dict_rows
from transforms.tokens import estimate_text_tokens
from transforms.write_embeddings import normalize_rows

SNIPPET_CHARS = 160
FETCH_FACTOR = 3


@dataclass(frozen=True)
class Query:
    line: int
    text: str
    relevant: tuple[str, ...] | None


def read_queries(uri: str) -> tuple[list[Query], list[dict]]:
    """(queries, problems): a line without a non-empty ``query`` string is reported, not fatal."""
    queries, problems = [], []
    if not fs.exists(uri):
        raise ConfigError(f"--queries: {uri} does not exist")
    for number, row in iter_dict_rows(uri, "jsonl"):
        text = row.get("query") if isinstance(row, dict) else None
        relevant = row.get("relevant_ids") if isinstance(row, dict) else None
        if isinstance(row, str):
            problems.append({"line": number, "error": row})
        elif not isinstance(text, str) or not text.strip():
            problems.append({"line": number, "error": "no non-empty \"query\" string"})
        elif relevant is not None and not isinstance(relevant, list):
            problems.append({"line": number, "error": "\"relevant_ids\" is not a list"})
        else:
            queries.append(Query(number, text, None if relevant is None else tuple(str(r) for r in relevant)))
    if not queries:
        raise ConfigError(f"--queries {uri}: no usable query lines ({len(problems)} bad)")
    return queries, problems


class QueryCache:
    """Query vectors already paid for, per (model, dimensionality, taskType), keyed by the
    exact text sent."""

    def __init__(self, root: str, model: str, dims: int, task_type: str | None):
        self.uri = fs.join(root, f"{model}-d{dims}-{task_type or 'prompt'}.parquet")
        self.vectors: dict[str, np.ndarray] = {}
        if fs.exists(self.uri):
            with fs.open_read(self.uri) as fh:
                table = pq.read_table(fh)
            flat = table.column("embedding").combine_chunks().flatten().to_numpy()
            for text, vec in zip(table.column("text").to_pylist(), flat.reshape(table.num_rows, dims)):
                self.vectors[text] = vec

    def save(self) -> None:
        texts = sorted(self.vectors)
        dims = len(next(iter(self.vectors.values()))) if texts else 0
        flat = np.concatenate([self.vectors[t] for t in texts]).astype(np.float32) if texts else np.zeros(0, np.float32)
        table = pa.table({"text": texts, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat), dims)})
        with fs.open_write(self.uri) as fh:
            pq.write_table(table, fh)


@dataclass
class Side:
    """One side of the comparison: how queries are embedded for it and where it searches."""

    name: str
    model: str
    dims: int
    index: str
    convention: QueryConvention
    settings: Settings
    embed_seconds: float = 0.0
    search_seconds: float = 0.0
    paid_tokens: int = 0
    paid_queries: int = 0

    def embed(self, texts: list[str], cache_root: str) -> np.ndarray:
        sent = [self.convention.text(t) for t in texts]
        cache = QueryCache(cache_root, self.model, self.dims, self.convention.task_type)
        todo = sorted({s for s in sent if s not in cache.vectors})
        started = time.perf_counter()
        if todo:
            with open_backend(self.settings) as client:
                got = client.embed_sync(self.model, [[{"text": s}] for s in todo], self.dims,
                                        task_type=self.convention.task_type)
            cache.vectors.update(zip(todo, got))
            cache.save()
        self.embed_seconds = time.perf_counter() - started
        self.paid_queries = len(todo)
        self.paid_tokens = sum(estimate_text_tokens(s) for s in todo)
        vectors, ok = normalize_rows(np.vstack([cache.vectors[s] for s in sent]))
        if not ok.all():
            raise RuntimeError(f"{self.model} returned a zero or non-finite query vector")
        return vectors

    def search(self, vectors: np.ndarray, k: int) -> list:
        searcher = IndexSearcher.open(self.index)
        searcher.check_space(self.model, self.dims)
        started = time.perf_counter()
        hits = searcher.search(vectors, k)
        self.search_seconds = time.perf_counter() - started
        return hits


def _ranked(hits, group_of: dict[str, str], k: int) -> list[tuple[str, float]]:
    """(group, best score) best first, each group once, at most k."""
    out: dict[str, float] = {}
    for hit in hits:
        group = group_of.get(hit.chunk_id)
        if group is not None and group not in out:
            out[group] = hit.score
        if len(out) == k:
            break
    return list(out.items())


def read_map(uri: str) -> pa.Table:
    with fs.open_read(uri) as fh:
        return pq.read_table(fh)


def legacy_scope_index(paths: MigrationPaths, state: dict, covered: set[str], beam_args) -> tuple[str, str]:
    """(legacy index dir, scope): the full legacy index when the shadow covers every row,
    else a legacy index over exactly the covered rows (built once, then reused)."""
    legacy = legacy_run(state)
    if len(covered) >= state["legacy"]["imported"]:
        return legacy.index, "full"
    digest = hashlib.sha256("\n".join(sorted(covered)).encode()).hexdigest()[:16]
    sub = RunPaths(paths.legacy_subset_output, f"subset-{digest}")
    if fs.exists(IndexLayout(sub.index).report):
        return sub.index, "subset"
    base = load_run(legacy)
    settings = Settings(base.config.model_copy(update={"output": sub.output}), base.base_dir)
    start_run(settings, sub)
    keep = pa.array(sorted(covered), pa.string())
    for path, _ in fs.match(fs.join(legacy.embeddings, "*.parquet")):
        with fs.open_read(path) as fh:
            table = pq.read_table(fh)
        with fs.open_write(fs.join(sub.embeddings, path.rsplit("/", 1)[-1])) as out:
            pq.write_table(table.filter(pc.is_in(table.column("chunk_id"), value_set=keep)), out)
    build_index(RunContext(settings, sub, tuple(beam_args)))
    set_phase(sub, "done")
    return sub.index, "subset"


def _listing(ranked: list[tuple[str, float]], snippets: dict[str, str]) -> list[dict]:
    return [{"rank": r, "id": g, "score": round(s, 6), "text": snippets.get(g, g)[:SNIPPET_CHARS]}
            for r, (g, s) in enumerate(ranked, 1)]


def evaluate(paths: MigrationPaths, state: dict, migration: Migration, queries_uri: str,
             k: int | None, beam_args=()) -> dict:
    started = time.perf_counter()
    run = last_run(state)
    if run is None:
        raise ConfigError("evaluate: nothing re-embedded yet (fix: `embedpipe migrate run --output "
                          f"{paths.output} --fraction 0.1` first)")
    k = k or migration.settings.evaluation.k
    if k < 1:
        raise ConfigError(f"-k: {k} must be at least 1")
    queries, problems = read_queries(queries_uri)
    mapping = read_map(run["legacy_ids"])
    covered = set(mapping.column("legacy_id").to_pylist())
    rows = read_rows(legacy_run(state), ["legacy_id", "group", "text"])
    legacy_group = dict(zip(rows.column("legacy_id").to_pylist(), rows.column("group").to_pylist()))
    snippets = {g: t for g, t in zip(rows.column("group").to_pylist(), rows.column("text").to_pylist()) if t}
    new_group = dict(zip(mapping.column("chunk_id").to_pylist(), mapping.column("group").to_pylist()))
    scope_groups = {legacy_group[i] for i in covered}
    legacy_index, scope = legacy_scope_index(paths, state, covered, beam_args)
    prepared = time.perf_counter()
    legacy_settings = load_run(legacy_run(state))
    shadow = RunPaths(run["output"], run["run_id"])
    new_settings = load_run(shadow)
    task = migration.settings.query_task_type
    sides = [
        Side("legacy", LEGACY_MODEL, legacy_settings.config.dimensionality, legacy_index,
             QueryConvention.for_model(LEGACY_MODEL, task_type=task), legacy_settings),
        Side("new", new_settings.config.model, new_settings.config.dimensionality, shadow.index,
             QueryConvention.for_model(new_settings.config.model, task_type=task,
                                       prompt=migration.task_types.query_prompt(task)), new_settings),
    ]
    texts = [q.text for q in queries]
    ranked = {}
    for side, group_of in zip(sides, (legacy_group, new_group)):
        hits = side.search(side.embed(texts, paths.query_cache), k * FETCH_FACTOR)
        ranked[side.name] = [_ranked(h, group_of, k) for h in hits]
    per_query = []
    for i, q in enumerate(queries):
        old = [g for g, _ in ranked["legacy"][i]]
        new = [g for g, _ in ranked["new"][i]]
        relevant = {legacy_group[r] for r in (q.relevant or ()) if r in covered}
        row = {"line": q.line, "query": q.text, "labelled": bool(relevant),
               "overlap_at_k": metrics.overlap_at_k(old, new, k),
               "rank_correlation": metrics.rank_correlation(old, new, k),
               "legacy": _listing(ranked["legacy"][i], snippets), "new": _listing(ranked["new"][i], snippets)}
        if relevant:
            for name, ids in (("legacy", old), ("new", new)):
                row[f"{name}_recall_at_k"] = metrics.recall_at_k(ids, relevant, k)
                row[f"{name}_ndcg_at_k"] = metrics.ndcg_at_k(ids, relevant, k)
                row[f"{name}_reciprocal_rank"] = metrics.reciprocal_rank(ids, relevant, k)
        per_query.append(row)
    seconds = {"total": time.perf_counter() - started, "queries": time.perf_counter() - prepared}
    report = assemble(paths, state, migration, run, sides, per_query, queries, problems, k, scope,
                      scope_groups, queries_uri, seconds)
    out_dir = paths.evaluation(run["run_id"])
    with fs.open_write(fs.join(out_dir, "queries.jsonl")) as fh:
        for row in per_query:
            fh.write((json.dumps(row, sort_keys=True) + "\n").encode())
    report["plots"] = write_plots(out_dir, report, per_query)
    write_json(fs.join(out_dir, "report.json"), report)
    write_json(paths.report, report)
    state.setdefault("evaluations", []).append({
        "run_id": run["run_id"], "at": report["created_at"], "report": fs.join(out_dir, "report.json"),
        "gate_passed": report["gate"]["passed"]})
    write_state(paths, state)
    return report


def _side_metrics(per_query: list[dict], name: str) -> dict | None:
    labelled = [r for r in per_query if r["labelled"]]
    if not labelled:
        return None
    return {
        "recall_at_k": metrics.mean([r[f"{name}_recall_at_k"] for r in labelled]),
        "ndcg_at_k": metrics.mean([r[f"{name}_ndcg_at_k"] for r in labelled]),
        "mrr_at_k": metrics.mean([r[f"{name}_reciprocal_rank"] for r in labelled]),
    }


def assemble(paths, state, migration, run, sides, per_query, queries, problems, k, scope, scope_groups,
             queries_uri, seconds) -> dict:
    legacy, new = sides
    old_scores = [h["score"] for r in per_query for h in r["legacy"]]
    new_scores = [h["score"] for r in per_query for h in r["new"]]
    thresholds = migration.settings.evaluation.thresholds or (
        [float(np.percentile(old_scores, p)) for p in range(10, 100, 10)] if old_scores else [])
    side_metrics = {"legacy": _side_metrics(per_query, "legacy"), "new": _side_metrics(per_query, "new")}
    delta = None
    if side_metrics["legacy"] is not None:
        delta = {m: round(side_metrics["new"][m] - side_metrics["legacy"][m], 6) for m in side_metrics["new"]}
    changed = sorted(per_query, key=lambda r: (r["overlap_at_k"], r["rank_correlation"] or 0.0, r["line"]))
    interactive = {s.name: s.settings.pricing[s.model]["text"]["interactive"] for s in sides}
    spent = [r for r in state["runs"] if r.get("tokens")]
    report = {
        "schema": "embedpipe.migration.report/1",
        "created_at": now(),
        "k": k,
        "queries": {"file": queries_uri, "used": len(queries), "bad_lines": problems,
                    "labelled": sum(r["labelled"] for r in per_query),
                    "with_labels_outside_scope": sum(1 for q, r in zip(queries, per_query)
                                                     if q.relevant and not r["labelled"])},
        "legacy": {"model": legacy.model, "dimensionality": legacy.dims, "index": legacy.index, "scope": scope,
                   "rows": state["legacy"]["imported"]},
        "new": {"model": new.model, "dimensionality": new.dims, "index": new.index, "run_id": run["run_id"],
                "coverage": run["coverage"], "covered_rows": run["covered_rows"],
                "compared_groups": len(scope_groups)},
        "task_types": {"version": migration.task_types.version,
                       "query_task_type": migration.settings.query_task_type,
                       "legacy_query": {"task_type": legacy.convention.task_type},
                       "new_query": {"prompt": new.convention.prompt},
                       "document_prompts": {t: migration.task_types.document[t]
                                            for t in state["legacy"]["summary"]["task_types"]}},
        "metrics": {**side_metrics, "delta": delta},
        "agreement": {
            "overlap_at_k": metrics.mean([r["overlap_at_k"] for r in per_query]),
            "rank_correlation": metrics.mean([r["rank_correlation"] for r in per_query]),
            "queries_with_identical_top_k": sum(r["overlap_at_k"] == 1.0 for r in per_query),
        },
        "scores": {"legacy": metrics.score_summary(old_scores), "new": metrics.score_summary(new_scores),
                   "legacy_top1": metrics.score_summary([r["legacy"][0]["score"] for r in per_query if r["legacy"]]),
                   "new_top1": metrics.score_summary([r["new"][0]["score"] for r in per_query if r["new"]])},
        "threshold_map": metrics.threshold_map(old_scores, new_scores, thresholds) if old_scores and new_scores else [],
        "most_changed": [{k_: r[k_] for k_ in ("line", "query", "overlap_at_k", "rank_correlation", "legacy", "new")}
                         for r in changed[: migration.settings.evaluation.review_queries]],
        "cost": {
            "query_embeddings": {s.name: {"model": s.model, "queries_embedded": s.paid_queries,
                                          "tokens": s.paid_tokens,
                                          "interactive_usd": round(s.paid_tokens / 1e6 * interactive[s.name], 6)}
                                 for s in sides},
            "reembedding": {"runs": len(spent),
                            "tokens_billed": sum(r["tokens"]["billed"] for r in spent),
                            "batch_usd": round(sum(r["cost_usd"]["billed"]["batch_usd"] for r in spent), 6),
                            "seconds": round(sum(r["seconds"] for r in spent), 3)},
        },
        "time_seconds": {"total": round(seconds["total"], 3),
                         "legacy_scope_index": round(seconds["total"] - seconds["queries"], 3),
                         "queries": round(seconds["queries"], 3),
                         **{f"{s.name}_{what}": round(getattr(s, f"{what}_seconds"), 3)
                            for s in sides for what in ("embed", "search")}},
        "queries_per_second": round(len(queries) / max(seconds["queries"], 1e-9), 2),
    }
    report["gate"] = gate_check(report, migration.settings.gate, run["run_id"])
    return report
