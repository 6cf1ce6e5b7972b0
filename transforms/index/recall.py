"""The recall gate: measured recall of the served index against exact search.

Queries are corpus vectors, so each query's own id is left out of both the exact and the
approximate answers (leave-one-out); otherwise every IVF-Flat probe finds the query
itself and recall@1 says nothing. A returned id counts as correct when its real score
reaches the k-th exact score (within float noise), so ties and summation-order
differences never count as misses — also when more ids tie than the exact lists hold
(a corpus with many identical chunks): such an id is scored on its own vector, never
looked up as missing from a truncated list.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import faiss
import numpy as np

K = 10
TIE_EPS = 1e-5
GT_DEPTH = 2 * K + 1  # exact neighbours kept per query: self + k + tie margin
REPEAT_UNDER_S = 0.25  # QPS timing: another run only while the runs so far took less
PROXY_SIGMA = 0.1  # query-like proxy: Gaussian noise per coordinate (see query_like)
PROXY_METHOD = (
    f"query-like proxy: held-out corpus vectors plus N(0, {PROXY_SIGMA}^2) per coordinate, "
    "renormalised, vs exact inner-product search; on the emulator's text corpus it tracks "
    "real 3-6 word queries' recall@10 within ~0.03 at every nprobe, at d=768 and d=256 "
    "(README); set index.eval_queries to gate on your own queries"
)


class RecallTargetUnreachable(RuntimeError):
    """No nprobe up to the limit reaches the target recall@10."""

    def __init__(self, message: str, *, target: float | None = None, best: float | None = None):
        super().__init__(message)
        self.target = target
        self.best = best


def exact_topk(
    queries: np.ndarray,
    x: np.ndarray,
    ids: np.ndarray,
    depth: int = GT_DEPTH,
    floor: np.ndarray | None = None,
):
    """Exact inner-product top-``depth`` of ``queries`` among rows ``x`` (global ``ids``),
    best first: one BLAS product and a partial sort (faiss.knn's heaps cost as much
    again as the product).

    ``floor`` (per query: the last score of a full running top list) leaves out the rows
    no query scores at or above its floor: they cannot enter any merged list."""
    return _top_of(queries @ x.T, ids, depth, floor)


def _top_of(scores: np.ndarray, ids: np.ndarray, depth: int, floor: np.ndarray | None):
    if floor is not None:
        keep = np.flatnonzero((scores >= floor[:, None]).any(axis=0))
        scores, ids = scores[:, keep], ids[keep]
    n = scores.shape[1]
    k = min(depth, n)
    if not k:
        return np.zeros((len(scores), 0), np.float32), np.zeros((len(scores), 0), np.int64)
    top = np.argpartition(scores, n - k, axis=1)[:, n - k :]
    top_scores = np.take_along_axis(scores, top, 1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top_scores, order, 1), ids[np.take_along_axis(top, order, 1)]


class RunningTopK:
    """The exact top-``depth`` of ``queries`` over rows that arrive in batches (a shard's
    add pass), merged as in :func:`merge_topk`.

    A partial sort of a whole batch of scores costs as much as the product. So only the
    first ``SEED_ROWS`` rows are ranked that way; after them every list is full, and each
    block of ``BLOCK_ROWS`` rows adds just the (query, row) pairs that reach the query's
    running floor, which soon are a handful per query. A block where some query has more
    than ``SPARSE_WIDTH`` such pairs (ties, duplicates) is ranked whole instead."""

    SEED_ROWS = 1024
    BLOCK_ROWS = 4096
    SPARSE_WIDTH = 256

    def __init__(self, queries: np.ndarray, depth: int = GT_DEPTH):
        self.queries, self.depth = queries, depth
        self.scores = np.zeros((len(queries), 0), np.float32)
        self.ids = np.zeros((len(queries), 0), np.int64)

    def add(self, x: np.ndarray, ids: np.ndarray) -> None:
        if not len(self.queries) or not len(x):
            return
        scores = self.queries @ x.T
        start = 0
        if self.scores.shape[1] < self.depth:
            start = min(len(x), max(self.SEED_ROWS, self.depth))
            self._merge(_top_of(scores[:, :start], ids[:start], self.depth, None))
        for lo in range(start, len(x), self.BLOCK_ROWS):
            hi = min(lo + self.BLOCK_ROWS, len(x))
            self._merge(self._above_floor(scores[:, lo:hi], ids[lo:hi]))

    def _above_floor(self, scores: np.ndarray, ids: np.ndarray):
        """Called only once the lists are full: the seed always fills them first."""
        floor = self.scores[:, -1]
        q, c = np.nonzero(scores >= floor[:, None])
        counts = np.bincount(q, minlength=len(scores))
        width = int(counts.max())
        if width > self.SPARSE_WIDTH:
            return _top_of(scores, ids, self.depth, floor)
        slot = np.arange(len(q)) - np.repeat(np.cumsum(counts) - counts, counts)
        out_scores = np.full((len(scores), width), -np.inf, np.float32)
        out_ids = np.full((len(scores), width), -1, np.int64)
        out_scores[q, slot] = scores[q, c]
        out_ids[q, slot] = ids[c]
        return out_scores, out_ids

    def _merge(self, part) -> None:
        self.scores, self.ids = merge_topk([(self.scores, self.ids), part], self.depth)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self.scores, self.ids


def query_like(vectors: np.ndarray, seed: int, sigma: float = PROXY_SIGMA) -> np.ndarray:
    """The gate's stand-in for real queries when the user gives none.

    Held-out corpus vectors make a flattering gate: each sits in a dense region, next to
    its neighbours' list. Real queries (a few words, another modality) sit between
    documents, far from all of them (top-1 similarity ~0.4 against ~0.8 for a corpus
    vector), so the coarse quantizer ranks their lists less reliably. Noise of ``sigma``
    per coordinate shifts every inner product (with centroids and documents alike) by
    ~N(0, sigma^2) whatever the dimensionality, which is what makes the difference."""
    rng = np.random.default_rng(seed)
    out = vectors.astype(np.float32) + sigma * rng.standard_normal(vectors.shape).astype(np.float32)
    return np.ascontiguousarray(out / np.linalg.norm(out, axis=1, keepdims=True), np.float32)


def merge_topk(parts, depth: int = GT_DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """k-way merge of per-shard (scores, ids) into the global top-``depth``; ties by id."""
    scores = np.hstack([s for s, _ in parts])
    ids = np.hstack([i for _, i in parts])
    scores = np.where(ids < 0, -np.inf, scores)
    order = np.lexsort((ids, -scores), axis=-1)[:, :depth]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _drop_self(ids: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    """Each row without the query's own id, truncated to k (-1 padded)."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for q, row in enumerate(ids):
        kept = row[(row != query_ids[q]) & (row >= 0)][:k]
        out[q, : len(kept)] = kept
    return out


def _kth_exact(k: int, scores: np.ndarray, ids: np.ndarray, query_id: int) -> float | None:
    """The k-th exact score of one query without itself (``None``: nothing to find)."""
    kept = scores[(ids != query_id) & (ids >= 0)]
    return float(kept[min(k, len(kept)) - 1]) if len(kept) else None


def returned_scores(
    queries: np.ndarray,
    approx: np.ndarray,
    query_ids: np.ndarray,
    gt_scores: np.ndarray,
    gt_ids: np.ndarray,
    vectors: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """The exact score of every returned id (``-inf`` for padding), shaped like ``approx``.

    An id in the query's exact top list has its score there. One outside a full list scores
    at most the list's last score: when that is already below the K-th exact score, the
    bound is recorded (enough to call it a miss at any k ≤ K). Otherwise — the list ended
    inside a tie, or was not full — the id's vector (``vectors``: sorted ids → rows) is
    read and scored.
    """
    out = np.full(approx.shape, -np.inf, dtype=np.float64)
    pending: list[tuple[int, int, int]] = []
    for q, row in enumerate(approx.tolist()):
        exact = dict(zip(gt_ids[q].tolist(), gt_scores[q].tolist()))
        bound = float(gt_scores[q][-1]) if len(gt_ids[q]) and (gt_ids[q] >= 0).all() else np.inf
        kth = _kth_exact(K, gt_scores[q], gt_ids[q], query_ids[q])
        for j, i in enumerate(row):
            if i < 0:
                continue
            if i in exact:
                out[q, j] = exact[i]
            elif kth is not None and bound < kth - TIE_EPS:
                out[q, j] = bound
            else:
                pending.append((q, j, i))
    if pending:
        ids = np.unique([i for _, _, i in pending])
        x = vectors(ids)
        at = {i: n for n, i in enumerate(ids.tolist())}
        for q, j, i in pending:
            out[q, j] = float(np.dot(queries[q].astype(np.float64), x[at[i]]))
    return out


def recall_at(
    k: int,
    approx: np.ndarray,
    approx_scores: np.ndarray,
    gt_scores: np.ndarray,
    gt_ids: np.ndarray,
    query_ids: np.ndarray,
) -> float:
    """Mean fraction of the top-k returned ids whose exact score (``approx_scores``, see
    ``returned_scores``) reaches the k-th exact one."""
    hits, total = 0, 0
    for q in range(len(query_ids)):
        kth = _kth_exact(k, gt_scores[q], gt_ids[q], query_ids[q])
        if kth is None:
            continue
        want = min(k, int(((gt_ids[q] != query_ids[q]) & (gt_ids[q] >= 0)).sum()))
        got = approx[q][:want] >= 0
        hits += int((approx_scores[q][:want][got] >= kth - TIE_EPS).sum())
        total += want
    return hits / total if total else 1.0


@dataclass(frozen=True)
class SweepPoint:
    nprobe: int
    recall_at_1: float
    recall_at_10: float
    qps: float
    vectors_scanned_per_query: float


def nprobe_sweep(nlist: int, max_nprobe: int, forced: int | None) -> list[int]:
    """1, 2, 4, … up to min(max_nprobe, nlist), plus the limit and any configured nprobe."""
    top = min(max_nprobe, nlist)
    values = {1 << i for i in range(top.bit_length()) if 1 << i <= top} | {top}
    if forced is not None:
        values.add(min(forced, nlist))
    return sorted(values)


def measure(
    searcher, queries, query_ids, gt_scores, gt_ids, nprobes, vectors, *,
    runs_max: int = 3
) -> list[SweepPoint]:
    """Recall@1/@10 and batched QPS per nprobe. ``vectors`` reads corpus vectors by sorted
    global id, for returned ids the exact lists cannot score.

    QPS is the best of up to ``runs_max`` runs, repeated only while the runs so far took
    under ``REPEAT_UNDER_S``: a longer search averages out its own noise, and the largest
    nprobes would otherwise take most of the build's recall phase."""
    cache: dict[int, np.ndarray] = {}

    def cached(ids: np.ndarray) -> np.ndarray:
        missing = np.array([i for i in ids.tolist() if i not in cache], dtype=np.int64)
        if len(missing):
            cache.update(zip(missing.tolist(), vectors(missing)))
        return np.stack([cache[i] for i in ids.tolist()])

    points = []
    for nprobe in nprobes:
        searcher.set_nprobe(nprobe)
        best, runs, spent = np.inf, 0, 0.0
        faiss.cvar.indexIVF_stats.reset()
        while runs < runs_max and (runs == 0 or spent < REPEAT_UNDER_S):
            t0 = time.perf_counter()
            _, ids = searcher.search_ids(queries, K + 1)
            elapsed = time.perf_counter() - t0
            best, runs, spent = min(best, elapsed), runs + 1, spent + elapsed
        scanned = faiss.cvar.indexIVF_stats.ndis / (runs * len(queries))
        approx = _drop_self(ids, query_ids, K)
        scores = returned_scores(queries, approx, query_ids, gt_scores, gt_ids, cached)
        points.append(
            SweepPoint(
                nprobe=nprobe,
                recall_at_1=recall_at(1, approx, scores, gt_scores, gt_ids, query_ids),
                recall_at_10=recall_at(K, approx, scores, gt_scores, gt_ids, query_ids),
                qps=len(queries) / max(best, 1e-9),
                vectors_scanned_per_query=scanned,
            )
        )
    return points


def choose_nprobe(
    points: list[SweepPoint], target: float, forced: int | None
) -> tuple[int | None, str]:
    """Smallest nprobe reaching the target (or the configured one if it does); None if none."""
    if forced is not None:
        point = next(p for p in points if p.nprobe == forced)
        if point.recall_at_10 >= target:
            return (
                forced,
                f"{forced}: override; recall@10 {point.recall_at_10:.3f} ≥ target {target}",
            )
        return (
            None,
            f"override nprobe={forced} gives recall@10 {point.recall_at_10:.3f} < target {target}",
        )
    for p in points:
        if p.recall_at_10 >= target:
            return p.nprobe, (
                f"{p.nprobe}: smallest nprobe with recall@10 {p.recall_at_10:.3f} ≥ target {target} "
                f"({p.qps:,.0f} QPS batched)"
            )
    best = max(points, key=lambda p: p.recall_at_10)
    return None, (
        f"no nprobe ≤ {points[-1].nprobe} reaches recall@10 {target} "
        f"(best {best.recall_at_10:.3f} at nprobe {best.nprobe})"
    )
