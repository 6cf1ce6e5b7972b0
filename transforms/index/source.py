"""Reading embeddings shards (Parquet schema v1) for the index, local or gs://.

Vectors come out as zero-copy float32 views on Arrow buffers; ``to_pylist`` would be
45× slower than the read itself (research §4g).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transforms import fs
from transforms.embeddings_schema import SchemaMismatchError, validate_metadata

ID_MAP_COLUMNS = ("chunk_id", "source_uri", "modality", "unit", "start", "end")
BATCH_ROWS = 32_768
# The sample pass is the first read in a fresh process: there, 96 MiB batches (32,768 rows
# of 768-d) decoded at half the speed of 24 MiB ones (Arrow's default mimalloc pool; the add
# pass, which comes second, was faster with the larger batches).
SAMPLE_BATCH_BYTES = 24 << 20
UNIT_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class VectorSpace:
    """The coordinate system an index lives in; queries from another space are refused."""

    model: str
    dimensionality: int
    normalized: bool


@dataclass(frozen=True)
class ShardInfo:
    shard: int
    path: str
    rows: int
    space: VectorSpace


def embeddings_glob(run_dir: str) -> str:
    return fs.join(run_dir, "embeddings", "*.parquet")


def number_shards(paths: Sequence[str]) -> list[tuple[int, str]]:
    """Shard numbers by sorted path, so ids do not depend on listing order."""
    return list(enumerate(sorted(set(paths))))


@contextlib.contextmanager
def open_parquet(path: str) -> Iterator[pq.ParquetFile]:
    if not fs.is_remote(path):
        with pq.ParquetFile(path) as pf:
            yield pf
        return
    with fs.open_read(path) as fh, pq.ParquetFile(fh) as pf:
        yield pf


def inspect_shard(numbered: tuple[int, str]) -> ShardInfo:
    """Row count and validated vector space from the footer only."""
    shard, path = numbered
    with open_parquet(path) as pf:
        try:
            meta = validate_metadata(pf.schema_arrow)
        except SchemaMismatchError as e:
            raise SchemaMismatchError(f"{path}: {e}") from e
        rows = pf.metadata.num_rows
    return ShardInfo(
        shard, path, rows, VectorSpace(meta.model, meta.dimensionality, meta.normalized)
    )


def bind_space(infos: Sequence[ShardInfo]) -> VectorSpace:
    """The one vector space all shards share; mixed models or sizes never share an index."""
    if not infos:
        raise ValueError("no embeddings shards to index")
    spaces = {info.space for info in infos}
    if len(spaces) > 1:
        detail = "; ".join(
            f"{s.model} d={s.dimensionality} normalized={s.normalized}: "
            + ", ".join(i.path for i in infos if i.space == s)[:300]
            for s in sorted(spaces, key=repr)
        )
        raise SchemaMismatchError(f"embeddings shards disagree on the vector space ({detail})")
    return spaces.pop()


def vectors(batch: pa.RecordBatch, d: int) -> np.ndarray:
    """(rows, d) float32 view of the ``embedding`` column; ``flatten`` honours slices."""
    flat = batch.column("embedding").flatten().to_numpy(zero_copy_only=True)
    return np.ascontiguousarray(flat.reshape(-1, d), dtype=np.float32)


def check_unit_norm(x: np.ndarray, where: str) -> None:
    """Inner product ranks by ‖x‖·cos: fail loudly instead of returning long vectors first."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    bad = np.flatnonzero(np.abs(norms - 1.0) > UNIT_NORM_TOLERANCE)
    if bad.size:
        raise ValueError(
            f"{where}: {bad.size} vectors are not unit-norm (first at row offset {bad[0]}, "
            f"norm {norms[bad[0]]:.4f}); the index uses inner product on L2-normalised vectors"
        )


def iter_batches(
    path: str, d: int, columns: Sequence[str] = (), batch_rows: int = BATCH_ROWS
) -> Iterator[tuple[int, np.ndarray, pa.RecordBatch]]:
    """(first row, vectors, batch with ``columns``) over a shard, bounded memory."""
    row = 0
    with open_parquet(path) as pf:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=["embedding", *columns]):
            x = vectors(batch, d)
            check_unit_norm(x, f"{path} rows {row}..{row + len(x) - 1}")
            yield row, x, batch
            row += len(x)


def iter_row_sets(
    path: str, d: int, row_sets: Sequence[np.ndarray]
) -> Iterator[list[np.ndarray]]:
    """Per batch of one shard, the vectors at each sorted row set's rows inside it: every
    set in one pass, and no gathered copy larger than a batch."""
    taken = [0] * len(row_sets)
    batch_rows = max(1, SAMPLE_BATCH_BYTES // (4 * d))  # float32 vectors
    for start, x, _ in iter_batches(path, d, batch_rows=batch_rows):
        pieces = []
        for n, rows in enumerate(row_sets):
            lo, hi = np.searchsorted(rows, [start, start + len(x)])
            pieces.append(x[rows[lo:hi] - start])
            taken[n] += hi - lo
        yield pieces
    for rows, count in zip(row_sets, taken):
        if count != len(rows):
            raise ValueError(f"{path}: shard shrank while sampling ({count} of {len(rows)} rows)")


def take_rows(path: str, d: int, rows: np.ndarray) -> np.ndarray:
    """Vectors at sorted row numbers ``rows`` of one shard."""
    out = np.empty((len(rows), d), dtype=np.float32)
    filled = 0
    for (piece,) in iter_row_sets(path, d, [rows]):
        out[filled : filled + len(piece)] = piece
        filled += len(piece)
    return out
