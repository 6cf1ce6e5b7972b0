"""WriteEmbeddings: join downloaded Batch API results to their chunks BY KEY and write
one Parquet part per original request file (schema v1, deterministic names).

A chunk can appear in several result files (first attempt + resubmissions); it is
embedded if any attempt succeeded, and it is written exactly once.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import Iterable

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from transforms import fs
from transforms.crash import crash_point
from transforms.embeddings_schema import EmbeddingsMeta, embeddings_schema
from transforms.gemini_client import parse_result_line
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
    out[ok] = vectors[ok] / norms[ok, None]
    return out, ok


def collect_outcomes(
    results: Iterable[tuple[Iterable[str], str]],
) -> dict[str, tuple]:
    """key → ("ok", values, token_count, job) or ("error", code, message, retryable).

    A success is never replaced by a later failure; a later failure replaces an
    earlier one (the last attempt's reason is the one reported).
    """
    outcomes: dict[str, tuple] = {}
    for lines, job in results:
        for raw in lines:
            if not raw.strip():
                continue
            parsed = parse_result_line(raw)
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


def join_results(
    keys: pa.Table,
    outcomes: dict[str, tuple],
    *,
    model: str,
    dimensionality: int,
    created_at: dt.datetime,
    missing_reason: str = "no result line for this key",
) -> tuple[pa.Table, list[KeyFailure]]:
    """Rows for every key that has a usable vector, failures for every other key."""
    rows = keys.to_pylist()
    good: list[dict] = []
    vectors: list[np.ndarray] = []
    failures: list[KeyFailure] = []
    for row in rows:
        key = row["chunk_id"]
        outcome = outcomes.get(key)

        def fail(error_class: str, message: str, retryable: bool) -> None:
            failures.append(
                KeyFailure(
                    key, row["source_uri"], row["source_generation"],
                    error_class, message, retryable,
                )
            )

        if outcome is None:
            fail("missing_result", missing_reason, True)
        elif outcome[0] == "error":
            fail(f"api_error_{outcome[1]}", str(outcome[2]), bool(outcome[3]))
        elif len(outcome[1]) != dimensionality:
            fail(
                "wrong_dimensionality",
                f"got {len(outcome[1])} values, expected {dimensionality}",
                False,
            )
        else:
            good.append({**row, "token_count": outcome[2], "batch_job": outcome[3]})
            vectors.append(np.asarray(outcome[1], dtype=np.float32))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, dimensionality), np.float32)
    normed, ok = normalize_rows(matrix)
    kept = [r for r, keep in zip(good, ok) if keep]
    for r, keep in zip(good, ok):
        if not keep:
            failures.append(
                KeyFailure(
                    r["chunk_id"], r["source_uri"], r["source_generation"],
                    "invalid_vector", "zero or non-finite embedding", False,
                )
            )
    normed = normed[ok]
    n = len(kept)
    table = pa.Table.from_arrays(
        [
            pa.array([r["chunk_id"] for r in kept], pa.string()),
            pa.array([r["source_uri"] for r in kept], pa.string()),
            pa.array([r["source_generation"] for r in kept], pa.string()),
            pa.array([r["modality"] for r in kept], pa.string()),
            pa.array([r["mime_type"] for r in kept], pa.string()),
            pa.array([r["unit"] for r in kept], pa.string()),
            pa.array([r["start"] for r in kept], pa.float64()),
            pa.array([r["end"] for r in kept], pa.float64()),
            pa.array([model] * n, pa.string()),
            pa.array([r["task"] for r in kept], pa.string()),
            pa.array([dimensionality] * n, pa.int32()),
            pa.FixedSizeListArray.from_arrays(
                pa.array(normed.reshape(-1), pa.float32()), dimensionality
            ),
            pa.array([r["token_count"] for r in kept], pa.int64()),
            pa.array([r["batch_job"] for r in kept], pa.string()),
            pa.array([created_at] * n, pa.timestamp("us", tz="UTC")),
        ],
        schema=embeddings_schema(dimensionality),
    )
    return table, failures


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
        outcomes = collect_outcomes((fs.iter_lines(path), job) for path, job in rs.results)
        table, failures = join_results(
            keys, outcomes, model=self._meta.model,
            dimensionality=self._meta.dimensionality, created_at=self._created_at,
            missing_reason=rs.missing_reason,
        )
        buf = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(self._meta.to_kv()), buf)
        fs.write_bytes(fs.join(self._dir, part_name(rs.part_index, rs.part_count)), buf.getvalue())
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
