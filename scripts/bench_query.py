"""Benchmark (not a test) of serving: the index searcher and ``embedpipe query``.

1. ``IndexSearcher`` on the merged (RAM), on-disk (memory-mapped) and sharded layouts of
   one corpus, each in a fresh process: cold start (open + first query), batched QPS at
   k=10 (1,000 queries per call) and single-query latency at the chosen nprobe, peak RSS
   and anonymous memory.
2. ``embedpipe query --queries FILE`` (one process, the index loaded once, queries
   embedded 100 per call) vs one ``embedpipe query TEXT`` process per query, on a run
   made by the pipeline against the emulator.

    python scripts/bench_query.py [--vectors 100000] [--docs 1500] [--queries 300]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench_common import REPO, in_fresh_process, load_average, row, save_rows
from transforms.index.params import human_size

LOCAL = os.path.join(REPO, "configs", "local.yaml")


def serve(index_dir: str, queries_path: str) -> dict:
    import faiss

    from transforms.index.search import IndexSearcher

    queries = np.load(queries_path)
    t0 = time.perf_counter()
    searcher = IndexSearcher.open(index_dir)
    searcher.search(queries[:1], 10)
    cold = time.perf_counter() - t0
    batched = []
    for _ in range(3):
        t0 = time.perf_counter()
        searcher.search(queries, 10)
        batched.append(time.perf_counter() - t0)
    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    for q in queries[:200]:
        searcher.search(q[None, :], 10)
    single = (time.perf_counter() - t0) / 200
    return {"cold": cold, "qps": len(queries) / min(batched), "single_ms": single * 1e3,
            "nprobe": searcher.nprobe}


def bench_layouts(work: str, n: int) -> dict:
    from apache_beam.options.pipeline_options import PipelineOptions

    from transforms.index import IndexConfig, build_index
    from transforms.index.synthetic import gaussian_mixture, write_shards

    x = gaussian_mixture(n, 768, clusters=max(10, n // 200), seed=0)
    queries = x[np.random.default_rng(2).choice(n, 1000, replace=False)]
    queries_path = os.path.join(work, "queries.npy")
    np.save(queries_path, queries)
    print(f"IndexSearcher: {n:,} x 768 vectors, 1,000 queries, k=10 ({load_average()})")
    print(f"  {'layout':8} {'cold start s':>12} {'QPS batch':>10} {'1-query ms':>10} {'nprobe':>6} "
          f"{'peak RSS':>9} {'peak anon':>9}")
    out = {}
    for merge in ("ram", "ondisk", "shards"):
        run = os.path.join(work, f"run-{merge}")
        write_shards(run, x, max(1, n // 20_000))
        build_index(run, IndexConfig(merge=merge), PipelineOptions(["--runner=FnApiRunner"]))
        r = in_fresh_process(serve, os.path.join(run, "index"), queries_path)
        out[merge] = r
        print(f"  {merge:8} {r['cold']:12.3f} {r['qps']:10,.0f} {r['single_ms']:10.3f} {r['nprobe']:6d} "
              f"{human_size(r['rss']):>9} {human_size(r['anon']):>9}")
    return out


def embedpipe(*args: str, stdin: str | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"embedpipe {args[0]} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0, proc


def bench_cli(work: str, docs: int, n_queries: int) -> dict:
    from bench_text_pipeline import WORDS, make_corpus

    corpus, out = os.path.join(work, "corpus"), os.path.join(work, "out")
    make_corpus(corpus, docs)
    seconds, _ = embedpipe("run", "--config", LOCAL, "--sources", corpus, "--output", out)
    rng = np.random.default_rng(4)
    queries = [" ".join(rng.choice(WORDS, 4)) for _ in range(n_queries)]
    path = os.path.join(work, "queries.txt")
    with open(path, "w") as fh:
        fh.write("\n".join(queries) + "\n")
    with open(os.path.join(work, "one.txt"), "w") as fh:
        fh.write(queries[0] + "\n")
    cold, _ = embedpipe("query", "--output", out, "--queries", os.path.join(work, "one.txt"))
    batch, proc = embedpipe("query", "--output", out, "--queries", path, "-k", "10")
    lines = proc.stdout.splitlines()
    assert len(lines) == n_queries and all(len(json.loads(x)["hits"]) == 10 for x in lines)
    singles = [embedpipe("query", "--output", out, q, "-k", "10", "--json")[0] for q in queries[:5]]
    one_each = len(singles) / sum(singles)
    print(f"\nembedpipe query on a {docs:,}-document run (emulator backend, built in {seconds:.0f} s)")
    print(f"  one process per query:            {one_each:8.2f} queries/s ({np.mean(singles):.2f} s each)")
    print(f"  --queries FILE, {n_queries} queries:       {n_queries / batch:8.2f} queries/s "
          f"(cold start: 1 query in {cold:.2f} s)")
    return {"batch_qps": n_queries / batch, "single_qps": one_each, "cold": cold}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rows-json", help="write this script's bench-results rows here")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="embedpipe-bench-query-")
    try:
        layouts = bench_layouts(work, args.vectors)
        cli = bench_cli(work, args.docs, args.queries)
        ratio = cli["batch_qps"] / cli["single_qps"]
        measured_all = all(v["qps"] > 0 and v["cold"] > 0 for v in layouts.values())
        save_rows(args.rows_json, [row(
            "query_batch_mode_qps_vs_one_process_per_query", cli["batch_qps"], cli["single_qps"],
            ratio, "cold start and warm QPS measured for ram/ondisk/shards; a batch mode "
            f"(--queries) faster than one process per query (IndexSearcher batched QPS: "
            + ", ".join(f"{m} {v['qps']:,.0f}" for m, v in layouts.items()) + ")",
            measured_all and ratio > 1, args.queries)])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
