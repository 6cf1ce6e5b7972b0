"""The build plan: index parameters plus which rows train it and which rows query it.

Rows are drawn uniformly over the whole corpus (not "the first file": research pitfall 1)
from one seeded draw over global row numbers, so every worker and every retry agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from transforms.index.params import IndexConfig, IndexParams, choose_params
from transforms.index.source import ShardInfo, VectorSpace, bind_space

SHARD_BITS = 40
ROW_MASK = (1 << SHARD_BITS) - 1


def global_ids(shard: int, rows: np.ndarray) -> np.ndarray:
    """``(shard << 40) | row``: deterministic under retries, decodable without a lookup."""
    return (np.int64(shard) << SHARD_BITS) | rows.astype(np.int64)


def split_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ids >> SHARD_BITS, ids & ROW_MASK


@dataclass(frozen=True)
class IndexPlan:
    params: IndexParams
    space: VectorSpace
    shards: tuple[ShardInfo, ...]
    n: int
    train_rows: dict  # shard -> sorted row numbers
    query_rows: dict  # shard -> sorted row numbers
    held_out: bool  # queries disjoint from the training sample

    @property
    def query_ids(self) -> np.ndarray:
        """Ids of the held-out queries, in the order the sample stage assembles them."""
        parts = [global_ids(s, r) for s, r in sorted(self.query_rows.items())]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)


def draw_rows(
    counts: Sequence[int], train: int, queries: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """Per-shard sorted rows for training and for queries from one uniform draw.

    Queries come first in the draw and are disjoint from the training rows whenever the
    corpus holds both; otherwise they overlap it (reported as ``held_out: false``).
    """
    n = int(sum(counts))
    picks = np.random.default_rng(seed).choice(n, size=min(n, train + queries), replace=False)
    query_pick = picks[:queries]
    train_pick = picks[queries:] if len(picks) == train + queries else picks[:train]
    offsets = np.concatenate([[0], np.cumsum(counts)])

    def per_shard(global_rows: np.ndarray) -> list[np.ndarray]:
        ordered = np.sort(global_rows)
        bounds = np.searchsorted(ordered, offsets)
        return [ordered[bounds[i] : bounds[i + 1]] - offsets[i] for i in range(len(counts))]

    return per_shard(train_pick), per_shard(query_pick), len(picks) == train + queries


def plan_index(infos: Sequence[ShardInfo], config: IndexConfig) -> IndexPlan:
    """Bind the vector space, choose parameters and draw the sample rows."""
    shards = tuple(sorted(infos, key=lambda i: i.shard))
    space = bind_space(shards)
    n = sum(i.rows for i in shards)
    params = choose_params(n, space.dimensionality, config)
    queries = min(config.holdout_queries, n)
    train, query, held_out = draw_rows(
        [i.rows for i in shards], params.train_size, queries, config.seed
    )
    return IndexPlan(
        params=params,
        space=space,
        shards=shards,
        n=n,
        train_rows={i.shard: r for i, r in zip(shards, train) if len(r)},
        query_rows={i.shard: r for i, r in zip(shards, query) if len(r)},
        held_out=held_out,
    )
