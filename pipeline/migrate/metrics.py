"""Retrieval metrics of the A/B report, as plain functions over ranked id lists.

Relevance is binary (an id is in ``relevant_ids`` or not). ``ranked`` lists are best
first, without duplicates, cut at k by the caller.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant ids found in the top k."""
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-gain nDCG: hits discounted by log2(rank + 1), over the best possible order."""
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal


def reciprocal_rank(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """1 / rank of the first relevant id in the top k (0 if none): averaged, this is MRR@k."""
    for rank, item in enumerate(ranked[:k], 1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """Share of the top k the two lists have in common (1.0 = same set, any order)."""
    return len(set(a[:k]) & set(b[:k])) / k


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), 1-based."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def rank_correlation(a: Sequence[str], b: Sequence[str], k: int) -> float | None:
    """Spearman's rho of the ids both top-k lists return, by their rank in each: 1 = the
    shared results come in the same order, -1 = reversed. None when fewer than two ids are
    shared (overlap@k already says the lists disagree)."""
    pos_b = {item: r for r, item in enumerate(b[:k])}
    shared = [item for item in a[:k] if item in pos_b]
    if len(shared) < 2:
        return None
    ra = np.arange(len(shared), dtype=float)
    rb = _ranks(np.array([pos_b[i] for i in shared], dtype=float))
    return float(np.corrcoef(ra, rb)[0, 1])


PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)


def score_summary(scores: Sequence[float]) -> dict:
    if not len(scores):
        return {"count": 0}
    x = np.asarray(scores, dtype=float)
    return {"count": int(x.size), "mean": round(float(x.mean()), 6), "min": round(float(x.min()), 6),
            "max": round(float(x.max()), 6),
            "percentiles": {str(p): round(float(np.percentile(x, p)), 6) for p in PERCENTILES}}


def threshold_map(old_scores: Sequence[float], new_scores: Sequence[float],
                  thresholds: Sequence[float]) -> list[dict]:
    """For each cosine cut-off tuned on 001, the Embedding 2 score at the same percentile of
    its own score distribution: a cut-off keeping the top p % of 001 results keeps about the
    top p % of new results at the mapped value."""
    old = np.sort(np.asarray(old_scores, dtype=float))
    new = np.asarray(new_scores, dtype=float)
    out = []
    for t in thresholds:
        share_below = float(np.searchsorted(old, t, side="left")) / len(old)
        out.append({"old": round(float(t), 6), "percentile": round(100 * share_below, 3),
                    "new": round(float(np.quantile(new, min(max(share_below, 0.0), 1.0))), 6)})
    return out


def mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(np.mean(present)), 6) if present else None
