"""The index stages as plain functions over small frozen dataclasses.

Each function is one named Beam step in :mod:`transforms.index.build` and runs just as
well without Beam (tests and the benchmark call them directly). Only paths, row numbers
and small arrays (held-out queries and their exact neighbours) travel between them; the
training sample goes through ``index/sample/`` files and every index through files with
deterministic names, so a retried bundle overwrites its own output.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transforms import fs
from transforms.index import report as rep
from transforms.index.layout import IndexLayout, delete, local_output, match_paths, write_index
from transforms.index.merge import merge
from transforms.index.params import IndexConfig, IndexParams
from transforms.index.plan import IndexPlan, global_ids, split_ids
from transforms.index.recall import (
    PROXY_METHOD,
    RunningTopK,
    SweepPoint,
    choose_nprobe,
    measure,
    merge_topk,
    nprobe_sweep,
    query_like,
)
from transforms.index.search import IndexSearcher, ServingInfo
from transforms.index.source import (
    ID_MAP_COLUMNS,
    ShardInfo,
    iter_batches,
    iter_row_sets,
    take_rows,
)

ID_MAP_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("chunk_id", pa.string()),
        ("source_uri", pa.string()),
        ("modality", pa.string()),
        ("unit", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
    ]
)


def cores() -> int:
    return len(os.sched_getaffinity(0))


# -- elements -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplePart:
    """Training rows stay in a file (they can be GBs); the few queries travel inline."""

    shard: int
    train_path: str | None
    queries: np.ndarray
    seconds: float
    peak_rss: int


@dataclass(frozen=True)
class Trained:
    """``queries`` are held-out corpus vectors (recall leave-one-out); ``gate_queries``
    the query-like set the gate decides on: the user's, or a proxy made from ``queries``."""

    path: str
    sha256: str
    queries: np.ndarray
    query_ids: np.ndarray
    gate_queries: np.ndarray
    gate_method: str
    sample_size: int
    sample_seconds: float
    sample_peak_rss: int
    seconds: float
    threads: int
    peak_rss: int


@dataclass(frozen=True)
class ShardResult:
    shard: int
    rows: int
    gt_scores: np.ndarray
    gt_ids: np.ndarray
    seconds: float
    threads: int
    peak_rss: int


@dataclass(frozen=True)
class Merged:
    shards: tuple[ShardResult, ...]
    files: tuple[str, ...]
    seconds: float
    peak_rss: int


@dataclass(frozen=True)
class Measured:
    merged: Merged
    points: tuple[SweepPoint, ...]  # the gate queries
    corpus_points: tuple[SweepPoint, ...]  # held-out corpus vectors, leave-one-out
    chosen: int | None
    reason: str
    list_sizes: np.ndarray
    seconds: float
    threads: int
    peak_rss: int


# -- stage functions ------------------------------------------------------------------
def draw_sample(info: ShardInfo, plan: IndexPlan, layout: IndexLayout) -> Iterator[SamplePart]:
    """This shard's share of the uniform training sample and held-out queries.

    Training rows go to their file batch by batch: gathering the shard's share first and
    then the training rows out of it cost two page-faulting copies of most of the shard."""
    empty = np.empty(0, np.int64)
    train, queries = plan.train_rows.get(info.shard, empty), plan.query_rows.get(info.shard, empty)
    if not len(train) and not len(queries):
        return
    t0 = time.perf_counter()
    d = plan.space.dimensionality
    train_path = layout.sample_part(info.shard) if len(train) else None
    query_x = np.empty((len(queries), d), np.float32)
    filled = 0
    with contextlib.ExitStack() as stack:
        sink = None
        if train_path:
            sink = stack.enter_context(open(stack.enter_context(local_output(train_path)), "wb"))
            np.lib.format.write_array_header_1_0(
                sink, {"descr": "<f4", "fortran_order": False, "shape": (len(train), d)}
            )
        for train_x, query_part in iter_row_sets(info.path, d, [train, queries]):
            if sink is not None:
                sink.write(train_x)
            query_x[filled : filled + len(query_part)] = query_part
            filled += len(query_part)
    yield SamplePart(info.shard, train_path, query_x, time.perf_counter() - t0, rep.peak_rss_bytes())


def _load_npy(uri: str) -> np.ndarray:
    with fs.local_copy(uri, suffix=".npy") as path:
        return np.load(path)


def _load_sample(uris: Sequence[str], counts: Sequence[int], d: int) -> np.ndarray:
    """The training sample, its parts (``counts`` rows each) read straight into one array:
    never the parts and their concatenation at once."""
    sample = np.empty((sum(counts), d), np.float32)
    row = 0
    for uri, rows in zip(uris, counts):
        with fs.local_copy(uri, suffix=".npy") as path:
            sample[row : row + rows] = np.load(path, mmap_mode="r")
        row += rows
    return sample


def make_template(params: IndexParams, d: int, sample: np.ndarray, seed: int) -> faiss.Index:
    """Empty trained index: the coordinate system every shard shares."""
    index = faiss.index_factory(d, params.factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    if params.exact:
        ivf.quantizer.add(np.zeros((1, d), dtype=np.float32))  # one list holds everything
        ivf.is_trained = True
    else:
        ivf.cp.seed = seed
        index.train(sample)
    return index


def train_template(
    parts: Sequence[SamplePart], plan: IndexPlan, layout: IndexLayout, config: IndexConfig
) -> Trained:
    """Train on one worker with every core, write ``trained.index``."""
    parts = sorted(parts, key=lambda p: p.shard)
    d = plan.space.dimensionality
    t_load = time.perf_counter()
    trained_from = [p for p in parts if p.train_path]
    sample = _load_sample([p.train_path for p in trained_from],
                          [len(plan.train_rows[p.shard]) for p in trained_from], d)
    queries = np.concatenate([p.queries for p in parts]) if parts else np.empty((0, d), np.float32)
    gate_queries, gate_method = _gate_queries(queries, layout, d, config.seed)
    threads = config.faiss_threads or cores()
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    index = make_template(plan.params, d, sample, config.seed)
    write_index(index, layout.trained)
    return Trained(
        path=layout.trained,
        sha256=hashlib.sha256(faiss.serialize_index(index).tobytes()).hexdigest(),
        queries=queries,
        query_ids=plan.query_ids,
        gate_queries=gate_queries,
        gate_method=gate_method,
        sample_size=len(sample),
        sample_seconds=sum(p.seconds for p in parts) + t0 - t_load,
        sample_peak_rss=max([p.peak_rss for p in parts], default=0),
        seconds=time.perf_counter() - t0,
        threads=threads,
        peak_rss=rep.peak_rss_bytes(),
    )


def _gate_queries(queries: np.ndarray, layout: IndexLayout, d: int, seed: int):
    """(vectors, method): the user's embedded ``index.eval_queries`` when the build was given
    them, else the query-like proxy of the held-out corpus vectors."""
    if not fs.exists(layout.eval_queries):
        return query_like(queries, seed), PROXY_METHOD
    x = np.ascontiguousarray(_load_npy(layout.eval_queries), np.float32)
    if x.ndim != 2 or x.shape[1] != d or not len(x):
        raise ValueError(f"{layout.eval_queries}: eval queries of shape {x.shape}, index d={d}")
    faiss.normalize_L2(x)
    return x, (f"the user's {len(x)} queries (index.eval_queries, embedded with the query "
               "prompt by the run's backend) vs exact inner-product search; ties count")


def _all_queries(trained: "Trained") -> np.ndarray:
    return np.concatenate([trained.queries, trained.gate_queries])


def add_shard(
    info: ShardInfo,
    plan: IndexPlan,
    trained: Trained,
    template: np.ndarray,
    layout: IndexLayout,
    threads: int,
) -> ShardResult:
    """One shard: ``add_with_ids`` into a fresh template copy, id map, exact neighbours."""
    t0 = time.perf_counter()
    d = plan.space.dimensionality
    index = faiss.deserialize_index(template)
    nearest = RunningTopK(_all_queries(trained))
    with contextlib.ExitStack() as stack:
        ids_path = stack.enter_context(local_output(layout.shard_ids(info.shard)))
        writer = stack.enter_context(pq.ParquetWriter(ids_path, ID_MAP_SCHEMA))
        store = None
        if plan.params.refine:
            store_path = stack.enter_context(local_output(layout.shard_refine(info.shard)))
            store = np.lib.format.open_memmap(
                store_path, mode="w+", dtype=np.dtype(plan.params.refine), shape=(info.rows, d)
            )
            stack.callback(store.flush)
        rows = 0
        for start, x, batch in iter_batches(info.path, d, ID_MAP_COLUMNS):
            ids = global_ids(info.shard, np.arange(start, start + len(x)))
            index.add_with_ids(x, ids)
            writer.write_table(
                pa.Table.from_arrays(
                    [pa.array(ids), *(batch.column(c) for c in ID_MAP_COLUMNS)],
                    schema=ID_MAP_SCHEMA,
                )
            )
            if store is not None:
                store[start : start + len(x)] = x
            nearest.add(x, ids)
            rows = start + len(x)
    if rows != info.rows:
        raise ValueError(f"{info.path}: {rows} rows read, footer said {info.rows}")
    write_index(index, layout.shard_index(info.shard))
    gt_scores, gt_ids = nearest.result()
    return ShardResult(
        info.shard, rows, gt_scores, gt_ids, time.perf_counter() - t0, threads, rep.peak_rss_bytes()
    )


def merge_shards(results: Sequence[ShardResult], plan: IndexPlan, layout: IndexLayout) -> Merged:
    t0 = time.perf_counter()
    results = tuple(sorted(results, key=lambda r: r.shard))
    files = merge(plan.params.merge, layout, [r.shard for r in results])
    return Merged(results, tuple(files), time.perf_counter() - t0, rep.peak_rss_bytes())


def serving_info(plan: IndexPlan, nprobe: int | None) -> ServingInfo:
    return ServingInfo(
        mode=plan.params.merge,
        shards=tuple(i.shard for i in plan.shards),
        nlist=plan.params.nlist,
        space=plan.space,
        refine=plan.params.refine,
        k_factor=plan.params.k_factor,
        nprobe=nprobe,
    )


def corpus_vectors(plan: IndexPlan, ids: np.ndarray) -> np.ndarray:
    """Vectors of sorted global ids, read from their shards' Parquet."""
    d = plan.space.dimensionality
    paths = {info.shard: info.path for info in plan.shards}
    shard_of, row_of = split_ids(ids)
    out = np.empty((len(ids), d), dtype=np.float32)
    for shard in np.unique(shard_of):
        sel = shard_of == shard
        out[sel] = take_rows(paths[int(shard)], d, row_of[sel])
    return out


def measure_recall(
    merged: Merged, plan: IndexPlan, trained: Trained, layout: IndexLayout, config: IndexConfig
) -> Measured:
    """Sweep nprobe on the served index against the shards' exact neighbours, for the
    gate queries (which choose nprobe) and for held-out corpus vectors (reported)."""
    t0 = time.perf_counter()
    threads = config.faiss_threads or cores()
    faiss.omp_set_num_threads(threads)
    gt_scores, gt_ids = merge_topk([(r.gt_scores, r.gt_ids) for r in merged.shards])
    searcher = IndexSearcher(layout.root, serving_info(plan, None))
    nlist = plan.params.nlist
    forced = (
        min(config.nprobe, nlist) if config.nprobe is not None and not plan.params.exact else None
    )
    sweep = nprobe_sweep(nlist, config.max_nprobe, forced)
    vectors = functools.partial(corpus_vectors, plan)
    nq = len(trained.queries)
    corpus_points = measure(  # one run per nprobe: its QPS is the gate sweep's business
        searcher, trained.queries, trained.query_ids, gt_scores[:nq], gt_ids[:nq], sweep, vectors,
        runs_max=1,
    )
    no_self = np.full(len(trained.gate_queries), -1, np.int64)
    points = measure(searcher, trained.gate_queries, no_self, gt_scores[nq:], gt_ids[nq:], sweep,
                     vectors, runs_max=2)
    chosen, reason = choose_nprobe(points, config.target_recall_at_10, forced)
    if plan.params.exact and chosen is not None:
        reason = f"1: the single list holds every vector (exact); measured recall@10 {points[0].recall_at_10:.3f}"
    return Measured(
        merged,
        tuple(points),
        tuple(corpus_points),
        chosen,
        reason,
        searcher.list_sizes(),
        time.perf_counter() - t0,
        threads,
        rep.peak_rss_bytes(),
    )


def publish_report(
    measured: Measured,
    plan: IndexPlan,
    trained: Trained,
    layout: IndexLayout,
    config: IndexConfig,
) -> dict:
    """Write report and plot; the driver enforces the gate from the report (raising inside
    the pipeline would make runners log a worker traceback for a verdict)."""
    report = rep.assemble_report(
        measured, plan, trained, layout, config, serving_info(plan, measured.chosen)
    )
    rep.write_report(layout, report)
    rep.plot_recall(layout, report)
    sample_dir = fs.join(layout.root, "sample")
    delete(match_paths(fs.join(sample_dir, "*.npy")))
    if not fs.is_remote(sample_dir):
        with contextlib.suppress(OSError):
            os.rmdir(sample_dir)
    return report
