"""Streaming reads of the table formats data warehouses export: Parquet, JSON Lines and
Avro (BigQuery's ``EXPORT DATA`` formats), local or gs://.

Parquet comes out as Arrow record batches (columnar, nothing converted); JSON Lines and
Avro as one dict per row, with a line that is not a JSON object reported by number
instead of stopping the read. Memory stays bounded by one batch.
"""
from __future__ import annotations

import json
import os
from typing import Iterator, Sequence

import pyarrow as pa

from transforms import fs
from transforms.index.source import open_parquet

FORMATS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".avro": "avro",
}


def table_format(uri: str) -> str | None:
    """``parquet`` | ``jsonl`` | ``avro`` by file name (BigQuery names its exports so)."""
    return FORMATS.get(os.path.splitext(uri.rsplit("/", 1)[-1].lower())[1])


def iter_parquet(uri: str, columns: Sequence[str], batch_rows: int = 8192) -> Iterator[pa.RecordBatch]:
    """Record batches of the named columns that exist in the file, in file order."""
    with open_parquet(uri) as pf:
        present = [c for c in dict.fromkeys(columns) if c in pf.schema_arrow.names]
        yield from pf.iter_batches(batch_size=batch_rows, columns=present)


def iter_dict_rows(uri: str, fmt: str) -> Iterator[tuple[int, dict | str]]:
    """(1-based row number, row dict) per row of a JSON Lines or Avro file; a row that is
    not an object comes out as (number, the reason) so the caller can dead-letter it."""
    if fmt == "avro":
        import fastavro

        with fs.open_read(uri) as fh:
            for number, record in enumerate(fastavro.reader(fh), 1):
                yield number, record
        return
    for number, line in enumerate(fs.iter_lines(uri), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            yield number, f"line {number} is not JSON: {exc}"
            continue
        yield number, row if isinstance(row, dict) else f"line {number} is not a JSON object"
