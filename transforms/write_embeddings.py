"""WriteEmbeddings: join downloaded Batch API results to their chunks BY KEY and write
one Parquet part per original request file (schema v1, deterministic names).

A chunk can appear in several result files (first attempt + resubmissions); it is
embedded if any attempt succeeded, and it is written exactly once.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from transforms import fs
from transforms.crash import crash_point
from transforms.embeddings_schema import EmbeddingsMeta, embeddings_schema
from transforms.gemini_client import parse_result_lines
from transforms.types import DeadLetter

FAILURES = "failures"


@dataclass(frozen=True)
class ResultSet:
    """Everything known about one original request file after collection."""

    part_index: int
    part_count: int
    request_name: str
    keys_path: str
    results: tuple  # ((results_path, batch_job_name), ...) in attempt order
    missing_reason: str = "no result line for this key"
    attempts: int = 1


@dataclass(frozen=True)
class KeyFailure:
    chunk_id: str
    source_uri: str
    source_generation: str
    error_class: str
    message: str
    retryable: bool


def part_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}.parquet"


def normalize_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalise rows; returns (normalised, ok-mask). Zero or non-finite rows are not ok.

    Only 3,072-d outputs come back normalised from the service; truncated (Matryoshka)
    vectors must be renormalised before inner-product search. Doing it for every row
    is idempotent and also guards against a service change.
    """
    norms = np.linalg.norm(vectors, axis=1)
    ok = np.isfinite(norms) & (norms > 0)
    out = np.zeros_like(vectors, dtype=np.float32)
    if ok.all():
        np.divide(vectors, norms[:, None], out=out)  # the same quotients, no masked copies
    else:
        out[ok] = vectors[ok] / norms[ok, None]
    return out, ok


def collect_outcomes(
    results: Iterable[tuple[Iterable[str | bytes], str]],
) -> dict[str, tuple]:
    """key → ("ok", values, token_count, job) or ("error", code, message, retryable).

    Lines may be text or raw bytes (``result_lines``): ASCII bytes parse as they are, so
    the common case skips decoding; other bytes are decoded as a text read would.

    A success is never replaced by a later failure; a later failure replaces an
    earlier one (the last attempt's reason is the one reported).
    """
    outcomes: dict[str, tuple] = {}
    for lines, job in results:
        for parsed in parse_result_lines(_non_blank(lines)):
            if parsed.key is None:
                continue
            if outcomes.get(parsed.key, ("",))[0] == "ok":
                continue
            if parsed.values is not None:
                outcomes[parsed.key] = ("ok", parsed.values, parsed.token_count, job)
            else:
                outcomes[parsed.key] = (
                    "error", parsed.error_code, parsed.error_message, parsed.retryable,
                )
    return outcomes


def _non_blank(lines: Iterable[str | bytes]) -> Iterator[str | bytes]:
    for raw in lines:
        if isinstance(raw, bytes) and not raw.isascii():
            raw = raw.decode("utf-8", errors="replace")  # as a text read would
        if raw and not raw.isspace():
            yield raw


KEY_COLUMNS = ("chunk_id", "source_uri", "source_generation", "modality", "mime_type", "unit",
               "start", "end")


def join_results(
    keys: pa.Table,
    outcomes: dict[str, tuple],
    *,
    model: str,
    dimensionality: int,
    created_at: dt.datetime,
    missing_reason: str = "no result line for this key",
) -> tuple[pa.Table, list[KeyFailure]]:
    """Rows for every key that has a usable vector, failures for every other key.

    Columnar: the key list's metadata columns are taken as Arrow arrays for the kept rows
    and the vectors are written into one preallocated matrix (no per-row dicts)."""
    ids = keys.column("chunk_id").to_pylist()
    uris = keys.column("source_uri")
    generations = keys.column("source_generation")
    failures: list[KeyFailure] = []

    def fail(row: int, error_class: str, message: str, retryable: bool) -> None:
        failures.append(
            KeyFailure(
                ids[row], uris[row].as_py(), generations[row].as_py(),
                error_class, message, retryable,
            )
        )

    good: list[int] = []
    found: list[tuple] = []
    for row, key in enumerate(ids):
        outcome = outcomes.get(key)
        if outcome is None:
            fail(row, "missing_result", missing_reason, True)
        elif outcome[0] == "error":
            fail(row, f"api_error_{outcome[1]}", str(outcome[2]), bool(outcome[3]))
        elif len(outcome[1]) != dimensionality:
            fail(
                row, "wrong_dimensionality",
                f"got {len(outcome[1])} values, expected {dimensionality}", False,
            )
        else:
            good.append(row)
            found.append(outcome)
    matrix = (np.stack([o[1] for o in found]) if found
              else np.zeros((0, dimensionality), np.float32))
    normed, ok = normalize_rows(matrix)
    for row, keep in zip(good, ok):
        if not keep:
            fail(row, "invalid_vector", "zero or non-finite embedding", False)
    kept = np.asarray(good, dtype=np.int64)[ok]
    columns = keys.select(list(KEY_COLUMNS)).take(kept)
    n = len(kept)
    table = pa.Table.from_arrays(
        [
            *columns.columns,
            pa.array([model] * n, pa.string()),
            keys.column("task").take(kept),
            pa.array(np.full(n, dimensionality, np.int32)),
            pa.FixedSizeListArray.from_arrays(
                pa.array((normed if ok.all() else normed[ok]).reshape(-1)), dimensionality
            ),
            pa.array([o[2] for o, keep in zip(found, ok) if keep], pa.int64()),
            pa.array([o[3] for o, keep in zip(found, ok) if keep], pa.string()),
            pa.array([created_at] * n, pa.timestamp("us", tz="UTC")),
        ],
        schema=embeddings_schema(dimensionality),
    )
    return table, failures


def result_lines(uri: str) -> Iterator[bytes]:
    """Raw lines of a downloaded result file, local or remote, streamed."""
    with fs.open_read(uri) as fh:
        yield from fh


def write_part(table: pa.Table, meta: EmbeddingsMeta, uri: str) -> None:
    """Stream one schema-v1 part with its file metadata straight to ``uri``."""
    with fs.open_write(uri) as fh:
        pq.write_table(table.replace_schema_metadata(meta.to_kv()), fh)


class WriteEmbeddingsDoFn(beam.DoFn):
    """ResultSet → one Parquet part; failures go to the ``failures`` output."""

    def __init__(self, embeddings_dir: str, meta: EmbeddingsMeta, created_at: dt.datetime):
        self._dir = embeddings_dir
        self._meta = meta
        self._created_at = created_at
        self._rows = Metrics.counter("embedpipe", "embedded_rows")
        self._failed = Metrics.counter("embedpipe", "failed_keys")

    def process(self, rs: ResultSet):
        keys = pq.read_table(io.BytesIO(fs.read_bytes(rs.keys_path)))
        outcomes = collect_outcomes((result_lines(path), job) for path, job in rs.results)
        table, failures = join_results(
            keys, outcomes, model=self._meta.model,
            dimensionality=self._meta.dimensionality, created_at=self._created_at,
            missing_reason=rs.missing_reason,
        )
        write_part(table, self._meta, fs.join(self._dir, part_name(rs.part_index, rs.part_count)))
        crash_point("part-written")
        self._rows.inc(table.num_rows)
        self._failed.inc(len(failures))
        for failure in failures:
            yield beam.pvalue.TaggedOutput(FAILURES, failure_to_dead_letter(failure, rs.attempts))
        yield {"part": part_name(rs.part_index, rs.part_count), "rows": table.num_rows}


def failure_to_dead_letter(failure: KeyFailure, attempts: int) -> DeadLetter:
    return DeadLetter(
        source_uri=failure.source_uri,
        stage="collect",
        error_class=failure.error_class,
        message=failure.message,
        attempts=attempts,
        chunk_id=failure.chunk_id,
        source_generation=failure.source_generation,
    )
