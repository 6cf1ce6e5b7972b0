"""``make bench``: every benchmark, one after the other, each in its own process, then
``bench-results.json`` — one row per goal of the performance table:
``{"name", "value", "baseline", "ratio", "goal", "met", "n", "cores"}``.

Each script prints its own tables (baseline and project side by side, the ratio, N, the
core count, the machine's load) and writes its rows to a temporary file gathered here.
    python scripts/bench_all.py [--out bench-results.json] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from bench_common import REPO, load_average, run_script

# (script, arguments, timeout s): the sizes the goals name; --quick shrinks every N.
BENCHMARKS = [
    ("bench_text_pipeline.py", ["--docs", "5000", "50000", "--rows", "50000"], 1500),
    ("bench_collect.py", ["--lines", "10000", "--files", "4"], 900),
    ("bench_chunking.py", ["--seconds", "300", "--pages", "300"], 600),
    ("bench_index.py", ["--n", "200000", "--shards", "4", "--repeats", "2"], 1500),
    ("bench_index.py", ["--n", "1000000", "--shards", "50", "--no-single", "--extrapolate"], 3000),
    ("bench_memory.py", ["--docs", "4000", "--result-files", "2", "--vectors", "20000"], 1500),
    ("bench_query.py", ["--vectors", "100000", "--docs", "1500", "--queries", "300"], 1200),
]
QUICK = {
    "bench_text_pipeline.py": ["--docs", "500", "3000", "--rows", "5000"],
    "bench_collect.py": ["--lines", "2000", "--files", "2"],
    "bench_chunking.py": ["--seconds", "120", "--pages", "60"],
    "bench_index.py": ["--n", "30000", "--shards", "3", "--clusters", "100"],
    "bench_memory.py": ["--docs", "300", "--result-files", "1", "--vectors", "12000"],
    "bench_query.py": ["--vectors", "20000", "--docs", "300", "--queries", "50"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(REPO, "bench-results.json"))
    ap.add_argument("--quick", action="store_true", help="small N everywhere (a smoke run)")
    args = ap.parse_args()
    rows, failed = [], []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="embedpipe-bench-rows-") as tmp:
        for i, (script, script_args, timeout) in enumerate(BENCHMARKS):
            if args.quick:
                if script == "bench_index.py" and "--no-single" in script_args:
                    script_args = QUICK[script] + ["--no-single", "--extrapolate"]
                else:
                    script_args = QUICK[script]
            out = os.path.join(tmp, f"{i}.json")
            print(f"\n=== {script} {' '.join(script_args)} ({load_average()}) ===", flush=True)
            t0 = time.perf_counter()
            code = run_script([os.path.join("scripts", script), *script_args, "--rows-json", out],
                              timeout)
            print(f"=== {script}: exit {code}, {time.perf_counter() - t0:.0f} s ===", flush=True)
            if code != 0 or not os.path.exists(out):
                failed.append(script)
                continue
            with open(out) as fh:
                rows += json.load(fh)
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=2)
    print(f"\n{len(rows)} rows -> {args.out} in {(time.perf_counter() - started) / 60:.1f} min")
    for r in rows:
        print(f"  {'met ' if r['met'] else 'MISS'} {r['name']:52} ratio {r['ratio']}  ({r['goal']})")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
