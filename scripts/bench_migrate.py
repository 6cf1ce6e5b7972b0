#!/usr/bin/env python3
"""Benchmark (not a test) of the migration's two data-heavy steps, each against a baseline
measured in the same run (best of 3):

1. ``migrate import`` throughput: read + validate (dimensionality, finiteness, norms,
   duplicate ids, empty text, task types) + L2-normalise + write the schema-v1 embeddings
   and the rows table, in rows/s — vs a bare ``pyarrow.parquet.read_table`` of the same
   file. The legacy store is N synthetic rows (corpus text, random 001-sized vectors: the
   import does not care what the vectors mean); the legacy index build is timed apart.
2. ``migrate evaluate`` queries/s over a migrated copy of the demo corpus: cold (every
   query embedded by both models through the emulator's sync API) and warm (query vectors
   cached), vs raw ``IndexSearcher.search`` on the same two indexes.

Usage: python scripts/bench_migrate.py [--rows 50000] [--dims 768] [--queries 360]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "scripts"))

from legacy_corpus import LABELLED_QUERIES, generate, query_lines, scaled_rows  # noqa: E402

from pipeline.cli import main as cli  # noqa: E402
from pipeline.migrate.config import load_migration_config  # noqa: E402
from pipeline.migrate.legacy import find_legacy, read_validate_write  # noqa: E402
from pipeline.run_layout import RunPaths  # noqa: E402
from transforms.index.search import IndexSearcher  # noqa: E402

CONFIG = os.path.join(REPO, "configs", "migration.yaml")


def best_of(n: int, fn):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def write_synthetic_store(path: str, rows: int, dims: int) -> None:
    base = scaled_rows(rows // 130 + 1)[:rows]
    rng = np.random.default_rng(7)
    writer = None
    for start in range(0, rows, 20_000):
        chunk = base[start:start + 20_000]
        vectors = rng.standard_normal((len(chunk), dims)).astype(np.float32)
        table = pa.table({
            "id": [r["id"] for r in chunk], "text": [r["text"] for r in chunk],
            "title": [r["title"] for r in chunk], "task_type": [r["task_type"] for r in chunk],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dims).cast(
                pa.list_(pa.float32())),
        })
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def bench_import(tmp: str, rows: int, dims: int) -> dict:
    store = os.path.join(tmp, "legacy.parquet")
    write_synthetic_store(store, rows, dims)
    size = os.path.getsize(store)
    t_read, table = best_of(3, lambda: pq.read_table(store))
    assert table.num_rows == rows
    migration = load_migration_config(CONFIG, os.path.join(tmp, "import"))
    source = find_legacy(store, migration.settings.columns)

    def run_import():
        paths = RunPaths(os.path.join(tmp, "import"), "bench")
        shutil.rmtree(paths.root, ignore_errors=True)
        return read_validate_write(source, migration, dims, paths, os.path.join(paths.root, "dead.jsonl"))

    t_import, tally = best_of(3, run_import)
    assert tally.imported == rows, tally
    print(f"import, {rows} rows x {dims} dims ({size / 1e6:.0f} MB Parquet)")
    print(f"  pyarrow read_table              {t_read:7.3f} s  {rows / t_read:10.0f} rows/s  (baseline)")
    print(f"  read+validate+normalise+write   {t_import:7.3f} s  {rows / t_import:10.0f} rows/s  "
          f"ratio {t_import / t_read:.1f}x")
    return {"rows": rows, "dims": dims, "baseline_rows_per_s": rows / t_read,
            "import_rows_per_s": rows / t_import, "ratio": t_import / t_read}


def migrate(*args: str) -> dict:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli(["migrate", *args])
    if code not in (0, 2):
        raise SystemExit(f"embedpipe migrate {args[0]} exited {code}")
    return json.loads(buf.getvalue())


def bench_evaluate(tmp: str, n_queries: int) -> dict:
    store = generate(os.path.join(tmp, "eval-legacy.parquet"))
    out = os.path.join(tmp, "eval-out")
    queries = os.path.join(tmp, "queries.jsonl")
    base = query_lines()
    with open(queries, "w") as fh:
        for i in range(n_queries):  # distinct texts, so the cold pass embeds each one
            line = base[i % len(base)]
            fh.write(json.dumps({**line, "query": f"{line['query']} ({i // len(base)})"}) + "\n")
    started = time.perf_counter()
    migrate("import", "--config", CONFIG, "--legacy", store, "--output", out)
    migrate("run", "--output", out)
    setup = time.perf_counter() - started
    cold = migrate("evaluate", "--output", out, "--queries", queries)
    warm = migrate("evaluate", "--output", out, "--queries", queries)
    indexes = [cold["legacy"]["index"], cold["new"]["index"]]
    vectors = [np.random.default_rng(1).standard_normal((n_queries, cold[s]["dimensionality"])).astype(np.float32)
               for s in ("legacy", "new")]
    searchers = [IndexSearcher.open(i) for i in indexes]

    def raw_search():
        for searcher, x in zip(searchers, vectors):
            searcher.search(x, 3 * cold["k"])

    t_raw, _ = best_of(3, raw_search)
    print(f"evaluate, {n_queries} queries x 2 models, k={cold['k']} ({cold['new']['covered_rows']} rows a side;"
          f" import + full re-embedding took {setup:.1f} s)")
    print(f"  IndexSearcher.search, both sides {n_queries / t_raw:10.0f} queries/s  (baseline)")
    print(f"  evaluate, query vectors cached   {warm['queries_per_second']:10.0f} queries/s")
    print(f"  evaluate, cold (sync embedding)  {cold['queries_per_second']:10.0f} queries/s  "
          f"(embedding {cold['time_seconds']['legacy_embed'] + cold['time_seconds']['new_embed']:.2f} s)")
    return {"queries": n_queries, "raw_search_qps": n_queries / t_raw,
            "evaluate_warm_qps": warm["queries_per_second"], "evaluate_cold_qps": cold["queries_per_second"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dims", type=int, default=768)
    parser.add_argument("--queries", type=int, default=10 * len(LABELLED_QUERIES))
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="embedpipe-bench-migrate-")
    try:
        results = {"import": bench_import(tmp, args.rows, args.dims),
                   "evaluate": bench_evaluate(tmp, args.queries)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
