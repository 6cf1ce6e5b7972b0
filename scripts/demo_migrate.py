"""`make demo-migrate`: a gemini-embedding-001 → Gemini Embedding 2 migration end to end on
a generated legacy store, on the embedded default (in-process Gemini API emulator).

import → a query (served by the legacy index) → plan → a 20 % subset → evaluate → the gate
refuses to cut over to a subset → the rest → evaluate → cut-over → the same query (served
by the new index) → rollback → cut-over again. Exits non-zero if any step does not behave
as the README says.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from legacy_corpus import LABELLED_QUERIES, generate, legacy_rows, write_queries  # noqa: E402

OUT = os.path.join(REPO, "demo-out", "migrate")
QUERY = "erupting volcanoes spewing molten lava"


def embedpipe(*args: str, expect: int = 0):
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != expect:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"embedpipe {' '.join(args[:2])} exited {done.returncode}, expected {expect}")
    return json.loads(done.stdout)


def show_query(output: str, label: str) -> list:
    hits = embedpipe("query", "--output", output, QUERY, "-k", "3", "--json")
    serving = json.load(open(os.path.join(output, "serving.json")))
    print(f"\n== query {QUERY!r}, {label}: served by {serving['model']} ({serving['side']} index) ==")
    for rank, hit in enumerate(hits, 1):
        print(f"  {rank}. {hit['score']:.4f}  {hit['source_uri'].rsplit('#', 1)[-1]}")
    return hits


def money(option: dict) -> str:
    cost = option["estimated_cost"]
    return (f"{option['legacy_rows']:>4} rows  {option['tokens_total']:>6} tokens  "
            f"${cost['batch_usd']:.6f} batch / ${cost['interactive_usd']:.6f} interactive  "
            f"{option['waves']} wave(s)")


def show_report(report: dict) -> None:
    m = report["metrics"]
    print(f"  {report['queries']['labelled']} labelled queries, k={report['k']}, "
          f"legacy side: {report['legacy']['scope']} index")
    for name in ("recall_at_k", "ndcg_at_k", "mrr_at_k"):
        print(f"  {name:12s} legacy {m['legacy'][name]:.3f}   new {m['new'][name]:.3f}   "
              f"delta {m['delta'][name]:+.3f}")
    print(f"  overlap@k {report['agreement']['overlap_at_k']:.3f}, rank correlation "
          f"{report['agreement']['rank_correlation']}; gate passed: {report['gate']['passed']}")


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    store = generate(os.path.join(OUT, "legacy.parquet"))
    queries = write_queries(os.path.join(OUT, "queries.jsonl"))
    output = os.path.join(OUT, "output")
    print(f"legacy store: {store} ({len(legacy_rows())} rows embedded with gemini-embedding-001)")
    print(f"query set:    {queries} ({len(LABELLED_QUERIES)} labelled queries)")

    imported = embedpipe("migrate", "import", "--config", "configs/migration.yaml",
                         "--legacy", store, "--output", output)
    print(f"\n== import: {imported['imported']} rows, {imported['dead_letters']} dead letters, "
          f"{imported['dimensionality']}-d, legacy index {imported['legacy_index']['factory']} ==")
    before = show_query(output, "before the cut-over")

    plan = embedpipe("migrate", "plan", "--output", output, "--fraction", "0.2")
    print("\n== plan (nothing spent) ==")
    print(f"  full:   {money(plan['full']['all'])}")
    print(f"  subset: {money(plan['subset']['all'])}")

    subset = embedpipe("migrate", "run", "--output", output, "--fraction", "0.2")
    print(f"\n== subset re-embedded: {subset['embedded']} rows, {subset['tokens']['billed']} tokens "
          f"billed, coverage {subset['coverage']:.0%} ==")
    print("== evaluate the subset (both sides on the same rows) ==")
    show_report(embedpipe("migrate", "evaluate", "--output", output, "--queries", queries))
    refused = embedpipe("migrate", "cutover", "--output", output, expect=2)
    failing = [f"{c['check']}={c['value']} (needs {c['threshold']})"
               for c in refused["gate"]["checks"] if not c["passed"]]
    print(f"== cut-over refused (exit 2): {', '.join(failing)} ==")

    full = embedpipe("migrate", "run", "--output", output)
    print(f"\n== the rest re-embedded: {full['embedded']} new rows, {full['carried_from_previous_run']} "
          f"carried, {full['tokens']['billed']} tokens billed (the subset is not paid twice) ==")
    print("== evaluate everything ==")
    report = embedpipe("migrate", "evaluate", "--output", output, "--queries", queries)
    show_report(report)
    cut = embedpipe("migrate", "cutover", "--output", output)
    print(f"== cut-over: serving {cut['serving']['model']} (forced: {cut['forced']}) ==")
    after = show_query(output, "after the cut-over")

    back = embedpipe("migrate", "rollback", "--output", output)
    print(f"\n== rollback: serving {back['serving']['model']} again; cut-over again: "
          f"{embedpipe('migrate', 'cutover', '--output', output)['serving']['model']} ==")
    print(f"\nreport: {os.path.join(output, 'migration', 'report.json')}")
    for name, path in report["plots"].items():
        print(f"plot:   {path}")

    ok = (before and after and "volcano_eruptions" in after[0]["source_uri"]
          and report["gate"]["passed"] and full["tokens"]["billed"] < plan["full"]["all"]["tokens_total"])
    if not ok:
        print("!! the migration did not behave as expected", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
