"""Benchmark (not a test) of the collect stage: result files in, embeddings Parquet out.

1. Parse + join + write of one result file by ``WriteEmbeddingsDoFn`` vs a bare loop on
   the same file (orjson per line + ``np.asarray`` + ``pq.write_table`` of ids and
   vectors), CPU time, best of interleaved rounds; MB/s of result JSON per core; where
   the time goes (cProfile).
2. The write pipeline (FnApiRunner) over several result files with 1 worker and with
   one worker per core: parse + write scaling.
3. Downloads: ``JobDriver.download_finished`` fetching the result files from an emulator
   in another process (streamed, concurrent) vs a raw HTTP copy of the same files and a
   local disk copy of the same bytes, all in this run.

    python scripts/bench_collect.py [--lines 10000] [--files 4] [--dim 768] [--rows-json FILE]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import io
import os
import shutil
import tempfile
import time

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from bench_common import (
    REPO,
    cores,
    cpu_seconds,
    start_emulator,
    interleaved_best,
    load_average,
    measure,
    print_breakdown,
    profile_breakdown,
    row,
    save_rows,
)
from pipeline.emulator.jobs import success_response
from transforms import fs
from transforms.embeddings_schema import EmbeddingsMeta
from transforms.plan_requests import KEYS_SCHEMA
from transforms.write_embeddings import (
    ResultSet,
    WriteEmbeddingsDoFn,
    collect_outcomes,
    join_results,
    result_lines,
    write_part,
)

MB = 1e6
MODEL = "gemini-embedding-2"


def write_fixture(work: str, files: int, lines: int, d: int) -> list[ResultSet]:
    """Key lists and emulator-format result files (``{"key", "response"}`` per line)."""
    rng = np.random.default_rng(0)
    sets = []
    for f in range(files):
        ids = [f"{f:04x}{i:028x}" for i in rng.permutation(lines)]
        n = lines
        keys = pa.Table.from_arrays(
            [pa.array(ids), pa.array([f"/corpus/docs/doc{i // 3:07d}.txt" for i in range(n)]),
             pa.array(["1700000000000000000-4096"] * n), pa.array(["text"] * n),
             pa.array(["text/plain"] * n), pa.array(["chars"] * n),
             pa.array(np.arange(n, dtype=np.float64) * 1800),
             pa.array(np.arange(n, dtype=np.float64) * 1800 + 2000),
             pa.array(["RETRIEVAL_DOCUMENT"] * n), pa.array(np.full(n, 480)),
             pa.array(np.full(n, 2300))],
            schema=KEYS_SCHEMA,
        )
        keys_path = os.path.join(work, "requests", f"req-{f:05d}-000.keys.parquet")
        os.makedirs(os.path.dirname(keys_path), exist_ok=True)
        pq.write_table(keys, keys_path)
        results = os.path.join(work, "results", f"req-{f:05d}-000.jsonl")
        os.makedirs(os.path.dirname(results), exist_ok=True)
        with open(results, "wb") as fh:
            for key in ids:
                vec = rng.standard_normal(d).astype(np.float32)
                fh.write(orjson.dumps({"key": key, "response": success_response(vec, 480)}) + b"\n")
        sets.append(ResultSet(f, files, f"req-{f:05d}-000", keys_path, ((results, "batches/b"),)))
    return sets


def bare_loop(results: str, out: str, d: int) -> None:
    """The baseline: a fast JSON parser + np.asarray + write_table of ids and vectors."""
    bare_write(*bare_parse(results), out, d)


def bare_parse(results: str) -> tuple[list, np.ndarray]:
    ids, vectors = [], []
    with open(results, "rb") as fh:
        for line in fh:
            obj = orjson.loads(line)
            ids.append(obj["key"])
            vectors.append(np.asarray(obj["response"]["embedding"]["values"], dtype=np.float32))
    return ids, np.stack(vectors)


def bare_write(ids: list, matrix: np.ndarray, out: str, d: int) -> None:
    table = pa.table({"chunk_id": ids,
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), d)})
    pq.write_table(table, out)


def stage_seconds(work: str, rs: ResultSet, meta: EmbeddingsMeta, created_at: dt.datetime,
                  repeats: int = 3) -> dict[str, dict[str, float]]:
    """Best CPU seconds of each stage of both sides, run one by one without a profiler
    (cProfile's per-call cost inflates the many small calls of line parsing)."""
    results = rs.results[0][0]
    best: dict[str, dict[str, float]] = {"bare loop": {}, "WriteEmbeddings": {}}

    def timed(side: str, stage: str, fn):
        start = cpu_seconds()
        out = fn()
        best[side][stage] = min(best[side].get(stage, float("inf")), cpu_seconds() - start)
        return out

    for _ in range(repeats):
        ids, matrix = timed("bare loop", "read + parse lines", lambda: bare_parse(results))
        timed("bare loop", "write Parquet", lambda: bare_write(
            ids, matrix, os.path.join(work, "bare.parquet"), meta.dimensionality))
        keys = timed("WriteEmbeddings", "read key list", lambda: pq.read_table(
            io.BytesIO(fs.read_bytes(rs.keys_path))))
        outcomes = timed("WriteEmbeddings", "read + parse lines", lambda: collect_outcomes(
            [(result_lines(results), rs.results[0][1])]))
        table, _ = timed("WriteEmbeddings", "join by key + normalise", lambda: join_results(
            keys, outcomes, model=meta.model, dimensionality=meta.dimensionality,
            created_at=created_at))
        timed("WriteEmbeddings", "write Parquet", lambda: write_part(
            table, meta, os.path.join(work, "stages.parquet")))
    for side in best.values():
        side["total"] = sum(side.values())
    return best


def bench_parse(work: str, rs: ResultSet, d: int) -> dict:
    meta = EmbeddingsMeta(MODEL, d, True, "bench")
    created_at = dt.datetime.now(dt.timezone.utc)
    fn = WriteEmbeddingsDoFn(os.path.join(work, "emb"), meta, created_at)
    results = rs.results[0][0]
    nbytes = os.path.getsize(results)
    best = interleaved_best({
        "bare loop": lambda: bare_loop(results, os.path.join(work, "bare.parquet"), d),
        "WriteEmbeddings": lambda: list(fn.process(rs)),
    }, repeats=3)
    bare, ours = best["bare loop"], best["WriteEmbeddings"]
    print(f"parse + join + write, one result file: {nbytes / MB:.1f} MB of JSON, "
          f"{sum(1 for _ in open(results, 'rb')):,} lines x {d} dims ({load_average()})")
    print(f"  {'':28}{'CPU s':>8}{'wall s':>8}{'MB/s/core':>11}")
    for name, t in (("bare loop (baseline)", bare), ("WriteEmbeddingsDoFn", ours)):
        print(f"  {name:28}{t['cpu']:8.3f}{t['wall']:8.3f}{nbytes / MB / t['cpu']:11.1f}")
    ratio = bare["cpu"] / ours["cpu"]
    print(f"  throughput ratio (CPU): {ratio:.2f}x of the bare loop (goal >= 0.8); "
          f"wall: {bare['wall'] / ours['wall']:.2f}x")
    stages = {
        "read key list": ["pyarrow.parquet.core:read_table"],
        "parse result lines": ["transforms.write_embeddings:collect_outcomes"],
        "join by key + normalise": ["transforms.write_embeddings:join_results"],
        "write Parquet": ["transforms.write_embeddings:write_part"],
    }
    print_breakdown("  where the time goes", {"WriteEmbeddings": profile_breakdown(
        lambda: list(fn.process(rs)), stages)})
    by_stage = stage_seconds(work, rs, meta, created_at)
    print("  the same stages run one by one without a profiler (best CPU s of 3; the bare "
          "loop stacks its vectors while parsing, WriteEmbeddings in the join)")
    print("  " + f"{'stage':24}" + "".join(f"{side:>17}" for side in by_stage))
    for stage in by_stage["WriteEmbeddings"]:
        print("  " + f"{stage:24}" + "".join(
            f"{side[stage]:17.3f}" if stage in side else f"{'-':>17}" for side in by_stage.values()))
    return {"ratio": ratio, "ours_mb_s": nbytes / MB / ours["cpu"],
            "bare_mb_s": nbytes / MB / bare["cpu"], "bytes": nbytes}


def bench_scaling(work: str, sets: list[ResultSet], d: int) -> None:
    """The write pipeline over every result file with 1 worker and with one per core; the
    pipeline's start-up (same pipeline, no files) is measured and taken out."""
    from pipeline import graph
    from pipeline.config import load_settings
    from pipeline.run_layout import RunPaths

    total = sum(os.path.getsize(rs.results[0][0]) for rs in sets)
    print(f"\nwrite pipeline (FnApiRunner) over {len(sets)} result files, {total / MB:.0f} MB of JSON")
    work_s = {}
    for workers in sorted({1, cores()}):
        out = os.path.join(work, f"scale-{workers}")
        settings = load_settings(os.path.join(REPO, "configs", "local.yaml"), sources=[],
                                 output=out, overrides=[f"dimensionality={d}"])
        flags = [] if workers == 1 else ["--direct_running_mode=multi_processing",
                                         f"--direct_num_workers={workers}"]
        start, _ = measure(lambda: graph.run_write(settings, RunPaths(out, "empty"), [], flags))
        wall, _ = measure(lambda: graph.run_write(settings, RunPaths(out, "bench"), sets, flags))
        work_s[workers] = max(wall - start, 1e-9)
        print(f"  {workers} worker(s): {wall:6.2f} s wall, of which start-up {start:5.2f} s; "
              f"{total / MB / work_s[workers]:7.1f} MB/s of JSON after start-up, "
              f"{total / MB / work_s[workers] / workers:7.1f} MB/s per worker")
    if len(work_s) > 1:
        print(f"  parse + write speed-up with {cores()} workers: {work_s[1] / work_s[cores()]:.2f}x "
              "(the machine is shared: see its load above)")


def register_results(sets: list[ResultSet], state_dir: str) -> list[str]:
    """The result files as generated files of an emulator state folder, as the service would
    hold them once the batch jobs are done; returns their ``files/…`` names."""
    from pipeline.emulator.state import Store

    store = Store(state_dir)
    names = []
    for rs in sets:
        with open(rs.results[0][0], "rb") as fh:
            store.add_file(f"batch-{rs.part_index:04d}", fh.read(), display_name=rs.request_name,
                           mime_type="application/jsonl", source="GENERATED", now=time.time())
        names.append(f"files/batch-{rs.part_index:04d}")
    return names


def succeeded_jobs(client, out: str, sets: list[ResultSet], names: list[str], workers: int = 8):
    """A JobDriver over ``out`` whose ledger says every job SUCCEEDED with output ``names``."""
    from pipeline.jobs import Capacity, JobDriver
    from pipeline.ledger import Ledger, LedgerRecord
    from pipeline.run_layout import RunPaths
    from transforms.plan_requests import RequestFileInfo

    paths = RunPaths(out, "bench")
    ledger = Ledger(paths.ledger)
    for rs, name in zip(sets, names):
        ledger.create(LedgerRecord(rs.request_name, rs.request_name, "bench", state="SUCCEEDED",
                                   job_name="batches/x", output_file=name))
    infos = [RequestFileInfo(rs.request_name, "", rs.keys_path, 0, 0, 0, (), ()) for rs in sets]
    return JobDriver(client, paths, infos, MODEL, Capacity(1, 1), download_workers=workers)


def bench_download(work: str, sets: list[ResultSet]) -> None:
    """Serve the result files from an emulator process and download them three ways."""
    import httpx

    from transforms.gemini_client import BatchClient

    state = os.path.join(work, "emulator")
    names = register_results(sets, state)
    total = sum(os.path.getsize(rs.results[0][0]) for rs in sets)
    server, base, key = start_emulator(state)
    try:
        print(f"\ndownloads: {len(sets)} result files, {total / MB:.0f} MB, from an emulator process")
        client = BatchClient.connect(base, key)
        for workers in (1, len(sets)):
            driver = succeeded_jobs(client, os.path.join(work, f"dl-{workers}"), sets, names, workers)
            wall, _ = measure(driver.download_finished)
            print(f"  embedpipe download_finished, {workers} at a time: {total / MB / wall:8.1f} MB/s "
                  "(streamed line by line into results/, keys scanned)")

        def raw_copy(name: str, target: str) -> None:
            with httpx.stream("GET", f"{base}/download/v1beta/{name}:download?alt=media",
                              headers={"x-goog-api-key": key}, timeout=60) as response, \
                    open(target, "wb") as fh:
                for chunk in response.iter_bytes(1 << 20):
                    fh.write(chunk)

        os.makedirs(os.path.join(work, "raw"), exist_ok=True)
        with concurrent.futures.ThreadPoolExecutor(len(sets)) as pool:
            wall, _ = measure(lambda: list(pool.map(
                raw_copy, names, [os.path.join(work, "raw", f"{i}.jsonl") for i in range(len(sets))])))
        print(f"  raw HTTP copy (httpx stream, {len(sets)} at a time): {total / MB / wall:8.1f} MB/s")
        wall, _ = measure(lambda: [shutil.copyfile(rs.results[0][0], os.path.join(work, "raw", f"c{i}"))
                                   for i, rs in enumerate(sets)])
        print(f"  local disk copy of the same bytes:        {total / MB / wall:8.1f} MB/s")
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=10_000, help="lines per result file")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--rows-json", help="write this script's bench-results rows here")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="embedpipe-bench-collect-")
    try:
        sets = write_fixture(work, args.files, args.lines, args.dim)
        parse = bench_parse(work, sets[0], args.dim)
        bench_scaling(work, sets, args.dim)
        bench_download(work, sets)
        save_rows(args.rows_json, [row(
            "collect_parse_throughput_vs_bare_loop", parse["ours_mb_s"], parse["bare_mb_s"],
            parse["ratio"], "ratio >= 0.8 (MB/s of result JSON per core, CPU time)",
            parse["ratio"] >= 0.8, args.lines)])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
