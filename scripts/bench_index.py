"""Benchmark (not a test) of the index stage on a clustered synthetic corpus. Prints:

1. the sharded Beam build (FnApiRunner) vs a single-process faiss build with the same
   factory, sample size and trained-index recipe (wall and CPU time ratio, peak memory
   of each, both measured in fresh processes),
2. recall@1/@10 and batched QPS per nprobe from the build's recall sweep,
3. bytes scanned per query vs the measured flat-scan memory bandwidth, with the
   bandwidth-bound single-query latency next to the measured one.

    python scripts/bench_index.py [--n 200000] [--d 768] [--shards 4] [--workers 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from transforms.index.params import IndexConfig, human_size  # noqa: E402

MB = 1 << 20


def beam_build(run: str, config: IndexConfig, workers: int) -> dict:
    from apache_beam.options.pipeline_options import PipelineOptions

    from transforms.index import build_index

    flags = ["--runner=FnApiRunner"]
    if workers > 1:
        flags += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    t0 = time.perf_counter()
    report = build_index(run, config, PipelineOptions(flags))
    return {"seconds": time.perf_counter() - t0, "report": report}


def single_build(run: str, factory: str, sample_size: int, seed: int, out: str) -> dict:
    """The same index in one process: read everything, train, add_with_ids, write."""
    import faiss
    import pyarrow.parquet as pq

    from transforms.index.plan import global_ids
    from transforms.index.report import peak_rss_bytes

    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
    t0 = time.perf_counter()
    parts = sorted(os.listdir(os.path.join(run, "embeddings")))
    xs, ids = [], []
    for s, name in enumerate(parts):
        col = pq.read_table(os.path.join(run, "embeddings", name), columns=["embedding"]).column(0)
        x = col.combine_chunks().flatten().to_numpy().reshape(len(col), -1)
        xs.append(x)
        ids.append(global_ids(s, np.arange(len(x))))
    x, ids = np.concatenate(xs), np.concatenate(ids)
    t_read = time.perf_counter()
    index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    sample = x[np.sort(np.random.default_rng(seed).choice(len(x), sample_size, replace=False))]
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(sample)
    t_train = time.perf_counter()
    index.add_with_ids(x, ids)
    t_add = time.perf_counter()
    faiss.write_index(index, out)
    t_end = time.perf_counter()
    return {
        "seconds": t_end - t0,
        "read": t_read - t0,
        "train": t_train - t_read,
        "add": t_add - t_train,
        "write": t_end - t_add,
        "peak_rss": peak_rss_bytes(),
    }


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _child(queue, fn, args):
    from transforms.index.report import peak_rss_bytes

    cpu = _cpu_seconds()
    result = fn(*args)
    result["cpu"] = _cpu_seconds() - cpu
    result.setdefault("peak_rss", peak_rss_bytes())
    queue.put(result)


def in_fresh_process(fn, *args) -> dict:
    """Run ``fn`` in a spawned process so its peak RSS is its own (and no forked OpenMP)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def flat_scan_bandwidth(x: np.ndarray, repeats: int = 5) -> float:
    """Bytes/s of a single-query exact scan (one thread): the memory-bound ceiling."""
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    q = x[:1].copy()
    index.search(q, 10)
    best = min(_timed(index.search, q, 10) for _ in range(repeats))
    return x.nbytes / best


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def single_query_ms(searcher, queries: np.ndarray, nprobe: int) -> float:
    import faiss

    faiss.omp_set_num_threads(1)
    searcher.set_nprobe(nprobe)
    t0 = time.perf_counter()
    for q in queries:
        searcher.search_ids(q[None, :], 10)
    return (time.perf_counter() - t0) / len(queries) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="Beam SDK worker processes")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=1.0, help="2.0 = weakly clustered ('hard')")
    ap.add_argument("--memory-budget", default="8G")
    ap.add_argument("--merge", default="ram", choices=["ram", "ondisk", "shards"])
    ap.add_argument("--workdir", default=None, help="kept if given, else a temp dir")
    args = ap.parse_args()

    from transforms.index.search import IndexSearcher
    from transforms.index.synthetic import gaussian_mixture, write_shards

    work = args.workdir or tempfile.mkdtemp(prefix="bench-index-")
    run = os.path.join(work, "run")
    cores = len(os.sched_getaffinity(0))
    print(
        f"corpus: {args.n:,} x {args.d} Gaussian mixture ({args.clusters} clusters, noise "
        f"{args.noise}), {args.shards} shards, {cores} cores"
    )
    t0 = time.perf_counter()
    x = gaussian_mixture(args.n, args.d, clusters=args.clusters, noise=args.noise, seed=0)
    shutil.rmtree(run, ignore_errors=True)
    write_shards(run, x, args.shards)
    print(
        f"generate + write Parquet: {time.perf_counter() - t0:.1f} s "
        f"({human_size(x.nbytes)} of float32)\n"
    )

    config = IndexConfig(memory_budget=args.memory_budget, merge=args.merge)
    beam = in_fresh_process(beam_build, run, config, args.workers)
    report = beam["report"]
    single = in_fresh_process(
        single_build,
        run,
        report["factory"],
        report["train_sample_size"],
        config.seed,
        os.path.join(work, "single.index"),
    )
    t = report["timings_seconds"]
    print(
        f"index: {report['factory']}  nlist {report['nlist']}  train sample "
        f"{report['train_sample_size']:,}  imbalance {report['imbalance_factor']}"
    )
    print("build                 wall s    CPU s   peak RSS   phases (wall s)")
    print(
        f"Beam sharded ({args.workers}w)   {beam['seconds']:7.1f}  {beam['cpu']:7.1f}   {human_size(beam['peak_rss']):>8}   "
        f"sample {t['sample']:.1f}, train {t['train']:.1f}, add {t['add']:.1f} "
        f"(slowest shard {t['add_slowest_shard']:.1f}), merge {t['merge']:.1f}, recall {t['recall']:.1f}"
    )
    print(
        f"single process        {single['seconds']:7.1f}  {single['cpu']:7.1f}   {human_size(single['peak_rss']):>8}   "
        f"read {single['read']:.1f}, train {single['train']:.1f}, add {single['add']:.1f}, "
        f"write {single['write']:.1f}"
    )
    print(
        f"ratio Beam / single: {beam['seconds'] / single['seconds']:.2f}x wall, "
        f"{beam['cpu'] / single['cpu']:.2f}x CPU (CPU is robust to other load on the machine; "
        "Beam also computes exact neighbours, id maps, merge and the recall sweep)\n"
    )

    bandwidth = flat_scan_bandwidth(x)
    searcher = IndexSearcher.open(os.path.join(run, "index"))
    code = report["code_bytes_per_vector"] - 8
    quantizer = report["nlist"] * report["d"] * 4
    queries = x[np.random.default_rng(1).choice(len(x), 100, replace=False)]
    print(
        f"flat-scan bandwidth (1 thread, single query): {bandwidth / 1e9:.1f} GB/s; exact scan = "
        f"{x.nbytes / MB:.0f} MB/query -> {x.nbytes / bandwidth * 1e3:.1f} ms"
    )
    print(
        f"recall sweep: {report['recall']['queries']} leave-one-out corpus queries, batched QPS "
        f"on {report['threads']['recall']} threads; chosen nprobe {report['chosen_nprobe']} "
        f"(target recall@10 {report['recall']['target_recall_at_10']})"
    )
    print("nprobe  R@1    R@10   QPS batch  vec/query  MB/query  bw-bound ms  1-query ms")
    for p in report["recall"]["sweep"]:
        scanned = p["vectors_scanned_per_query"] * code + quantizer
        print(
            f"{p['nprobe']:6d}  {p['recall_at_1']:.3f}  {p['recall_at_10']:.3f}  "
            f"{p['qps']:9,.0f}  {p['vectors_scanned_per_query']:9,.0f}  {scanned / MB:8.2f}  "
            f"{scanned / bandwidth * 1e3:11.3f}  {single_query_ms(searcher, queries, p['nprobe']):10.3f}"
        )
    print(
        f"\nindex {human_size(report['index_bytes'])} ({report['bytes_per_vector']} B/vector, "
        f"{report['code_bytes_per_vector']} B codes+id); peak RSS per phase: "
        + ", ".join(f"{k} {human_size(v)}" for k, v in report["peak_memory_bytes"].items())
    )
    print(f"report: {os.path.join(run, 'index', 'report.json')}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
