"""Clustered synthetic corpora written as real embeddings shards, for tests and benchmarks.

The mixture follows the research data (faiss-sharded-ivf.md §4): unit-norm centres with
log-normal weights plus anisotropic noise in a shared rotation, L2-normalised, so IVF
behaves as on embeddings (neighbours mostly in one list, some across lists).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transforms import fs
from transforms.embeddings_schema import EmbeddingsMeta, schema_with_meta

CHUNK_ROWS = 20_000


def gaussian_mixture(
    n: int, d: int, *, clusters: int = 1000, noise: float = 1.0, seed: int = 0
) -> np.ndarray:
    """(n, d) float32 unit vectors; larger ``noise`` → weaker clusters, harder search."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0.0, 0.7, clusters)
    labels = rng.choice(clusters, size=n, p=weights / weights.sum())
    std = np.arange(1, d + 1, dtype=np.float32) ** -0.5
    std *= noise / np.sqrt((std**2).sum())
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for i in range(0, n, CHUNK_ROWS):
        m = min(CHUNK_ROWS, n - i)
        noise_part = (rng.standard_normal((m, d), dtype=np.float32) * std) @ rotation.T
        out[i : i + m] = centres[labels[i : i + m]] + noise_part
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def chunk_id(i: int) -> str:
    return f"{i:032x}"


def write_shards(
    run_dir: str,
    x: np.ndarray,
    shards: int,
    *,
    model: str = "gemini-embedding-2",
    row_group_rows: int = 10_000,
    first_row: int = 0,
) -> list[str]:
    """Write ``x`` as ``<run>/embeddings/part-NNNNN-of-MMMMM.parquet`` (schema v1)."""
    n, d = x.shape
    meta = EmbeddingsMeta(
        model=model, dimensionality=d, normalized=True, config_fingerprint="synthetic"
    )
    schema = schema_with_meta(meta)
    bounds = np.linspace(0, n, shards + 1).astype(int)
    paths = []
    for s in range(shards):
        lo, hi = bounds[s], bounds[s + 1]
        rows = np.arange(lo, hi) + first_row
        m = hi - lo
        columns = {
            "chunk_id": [chunk_id(i) for i in rows],
            "source_uri": [f"synthetic://doc-{i // 10:08d}" for i in rows],
            "source_generation": ["1"] * m,
            "modality": ["text"] * m,
            "mime_type": ["text/plain"] * m,
            "unit": ["chars"] * m,
            "start": (rows % 10 * 1000).astype(np.float64),
            "end": (rows % 10 * 1000 + 1000).astype(np.float64),
            "model": [model] * m,
            "task": ["RETRIEVAL_DOCUMENT"] * m,
            "dimensionality": np.full(m, d, dtype=np.int32),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x[lo:hi].reshape(-1)), d),
            "token_count": np.full(m, 100, dtype=np.int64),
            "batch_job": ["synthetic"] * m,
            "created_at": pa.nulls(m, pa.timestamp("us", tz="UTC")),
        }
        table = pa.table(columns, schema=schema)
        path = fs.join(run_dir, "embeddings", f"part-{s:05d}-of-{shards:05d}.parquet")
        with fs.open_write(path) as fh:
            pq.write_table(table, fh, row_group_size=row_group_rows)
        paths.append(path)
    return paths
