"""Benchmark (not a test): prints, in one run,

1. the prepare pipeline (ListSources → Chunk → PlanRequests on FnApiRunner) for N text
   chunks vs a plain-Python loop doing the same stages with the same functions, and
2. the Parquet write of N embedding rows through WriteEmbeddings' join + write vs a bare
   ``pyarrow.parquet.write_table`` of the same table.

Ratios are against the baseline measured in the same run, so they travel across machines.
    python scripts/bench_text_pipeline.py [--docs 2000] [--dim 768]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pipeline import graph  # noqa: E402
from pipeline.config import load_settings  # noqa: E402
from pipeline.run_layout import RunPaths  # noqa: E402
from transforms.chunk import chunk_source  # noqa: E402
from transforms.list_sources import describe, expand_pattern  # noqa: E402
from transforms.plan_requests import pack_lines, plan_line, write_request_file  # noqa: E402
from transforms.write_embeddings import collect_outcomes, join_results  # noqa: E402

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron "
         "pi rho sigma tau upsilon phi chi psi omega").split()


def make_corpus(root: str, docs: int) -> None:
    rng = np.random.default_rng(0)
    os.makedirs(root)
    for i in range(docs):
        paragraphs = [" ".join(rng.choice(WORDS, 120)) for _ in range(4)]
        with open(os.path.join(root, f"doc{i:05d}.txt"), "w") as fh:
            fh.write("\n\n".join(paragraphs))


def plain_loop(settings, corpus: str, out: str) -> int:
    sizing = graph.request_sizing(settings)
    lines = []
    for listed in expand_pattern(corpus):
        chunks, _errors = chunk_source(describe(listed), settings.chunk_settings())
        lines += [plan_line(c, sizing) for c in chunks]
    for i, group in enumerate(pack_lines(lines, sizing)):
        write_request_file(group, out, f"req-{i:05d}-000")
    return len(lines)


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="embedpipe-bench-")
    try:
        corpus = os.path.join(work, "corpus")
        make_corpus(corpus, args.docs)
        settings = load_settings(
            os.path.join(REPO, "configs", "local.yaml"), sources=[corpus],
            output=os.path.join(work, "out"), overrides=[f"dimensionality={args.dim}"],
        )
        paths = RunPaths(settings.config.output, "bench")
        t_beam, _ = timed(graph.run_prepare, settings, paths)
        t_loop, n_chunks = timed(plain_loop, settings, corpus, os.path.join(work, "loop"))
        print(f"prepare, {args.docs} docs -> {n_chunks} chunks")
        print(f"  plain-Python loop   {t_loop:7.2f} s  {n_chunks / t_loop:9.0f} chunks/s  (baseline)")
        print(f"  Beam FnApiRunner    {t_beam:7.2f} s  {n_chunks / t_beam:9.0f} chunks/s  "
              f"ratio {t_beam / t_loop:.2f}x")

        loop_dir = os.path.join(work, "loop")
        first = sorted(p for p in os.listdir(loop_dir) if p.endswith(".keys.parquet"))[0]
        keys = pq.read_table(os.path.join(loop_dir, first))
        rng = np.random.default_rng(1)
        lines = [
            json.dumps({"key": k, "response": {"embedding": {"values": rng.standard_normal(args.dim).round(6).tolist()},
                                               "tokenCount": "100"}})
            for k in keys.column("chunk_id").to_pylist()
        ]
        now = dt.datetime.now(dt.timezone.utc)
        t_parse, outcomes = timed(collect_outcomes, [(lines, "batches/bench")])
        t_join, (table, _) = timed(
            lambda: join_results(keys, outcomes, model="gemini-embedding-2",
                                 dimensionality=args.dim, created_at=now))
        bare = table.select(["chunk_id", "embedding"])
        t_base = min(timed(pq.write_table, bare, os.path.join(work, "base.parquet"))[0]
                     for _ in range(3))
        t_ours = min(timed(pq.write_table, table, os.path.join(work, "ours.parquet"))[0]
                     for _ in range(3))
        n = table.num_rows
        print(f"write embeddings, {n} rows x {args.dim} dims")
        print(f"  pq.write_table (ids + vectors)  {t_base:7.3f} s  (baseline)")
        print(f"  schema v1 write                 {t_ours:7.3f} s  ratio {t_ours / t_base:.2f}x")
        print(f"  + parse result JSON             {t_parse:7.3f} s  ratio {t_parse / t_base:.2f}x")
        print(f"  + join by key and normalise     {t_join:7.3f} s  ratio {t_join / t_base:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
