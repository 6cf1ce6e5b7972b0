"""``migrate cutover`` and ``migrate rollback``: move the serving pointer, behind a gate.

The gate (``migration.gate``) is checked against the latest evaluation report:
- the report is of the latest shadow run (re-embedding more after evaluating means
  evaluating again);
- the shadow index covers at least ``min_coverage`` of the imported rows (default all of
  them: cutting over to a 10 % subset would make 90 % of the corpus unfindable);
- with at least ``min_labelled_queries`` labelled queries: new recall@k − old recall@k ≥
  ``min_recall_delta`` (default −0.01); otherwise mean overlap@k ≥ ``min_overlap_at_k``.

A failing gate refuses with exit 2 and the numbers; ``--force`` cuts over anyway and the
pointer and the history record that it was forced. Rollback points back at the legacy
index, which stays until the user deletes it. Both are idempotent.
"""
from __future__ import annotations

from pipeline.config import ConfigError
from pipeline.migrate.config import GateSettings, Migration
from pipeline.migrate.layout import MigrationPaths
from pipeline.migrate.serving import pointer, read_serving, write_serving
from pipeline.migrate.state import now, write_state
from pipeline.run_layout import RunPaths, read_json
from transforms import fs


def gate_check(report: dict | None, gate: GateSettings, latest_run_id: str) -> dict:
    """Every gate check with its value and threshold; ``passed`` only if all pass."""
    if report is None:
        return {"passed": False, "basis": None, "checks": [
            {"check": "evaluated", "passed": False, "value": None, "threshold": None,
             "detail": "no evaluation report (fix: embedpipe migrate evaluate --queries FILE)"}]}
    checks = [
        {"check": "evaluated_latest_run", "value": report["new"]["run_id"], "threshold": latest_run_id,
         "passed": report["new"]["run_id"] == latest_run_id,
         "detail": "the report must be of the shadow run that would be served"},
        {"check": "coverage", "value": report["new"]["coverage"], "threshold": gate.min_coverage,
         "passed": report["new"]["coverage"] >= gate.min_coverage,
         "detail": f"{report['new']['covered_rows']} of {report['legacy']['rows']} legacy rows re-embedded"},
    ]
    labelled = report["queries"]["labelled"]
    if labelled >= gate.min_labelled_queries:
        m = report["metrics"]
        delta = m["delta"]["recall_at_k"]
        checks.append({"check": "recall_at_k_delta", "value": delta, "threshold": gate.min_recall_delta,
                       "passed": delta >= gate.min_recall_delta,
                       "detail": f"recall@{report['k']} new {m['new']['recall_at_k']} vs legacy "
                                 f"{m['legacy']['recall_at_k']} on {labelled} labelled queries"})
        basis = "labels"
    else:
        overlap = report["agreement"]["overlap_at_k"]
        checks.append({"check": "overlap_at_k", "value": overlap, "threshold": gate.min_overlap_at_k,
                       "passed": overlap is not None and overlap >= gate.min_overlap_at_k,
                       "detail": f"mean overlap@{report['k']} of {report['queries']['used']} queries "
                                 f"({labelled} labelled, fewer than {gate.min_labelled_queries})"})
        basis = "overlap"
    return {"passed": all(c["passed"] for c in checks), "basis": basis, "checks": checks}


def _brief(serving: dict | None) -> dict | None:
    return serving and {k: serving[k] for k in ("side", "run_id", "model", "dimensionality", "index")}


def cutover(paths: MigrationPaths, state: dict, migration: Migration, force: bool) -> tuple[dict, int]:
    runs = state["runs"]
    if not runs:
        raise ConfigError("cutover: nothing re-embedded yet (fix: embedpipe migrate run, then evaluate)")
    run = runs[-1]
    serving = read_serving(paths.output)
    if serving and serving["side"] == "shadow" and serving["run_id"] == run["run_id"]:
        return {"cutover": True, "already_serving": True, "serving": serving}, 0
    report = read_json(paths.report) if fs.exists(paths.report) else None
    gate = gate_check(report, migration.settings.gate, run["run_id"])
    if not gate["passed"] and not force:
        return {"cutover": False, "refused": True, "gate": gate, "serving": _brief(serving),
                "fix": "improve coverage or quality and evaluate again, or --force (recorded)"}, 2
    forced = not gate["passed"]
    target = pointer("shadow", RunPaths(run["output"], run["run_id"]), migration, reason="cutover",
                     forced=forced, report=paths.report if report else None)
    write_serving(paths.output, target)
    state["history"].append({"at": now(), "action": "cutover", "forced": forced, "from": _brief(serving),
                             "to": _brief(target), "gate": gate})
    write_state(paths, state)
    return {"cutover": True, "forced": forced, "gate": gate, "serving": target,
            "previous": _brief(serving)}, 0


def rollback(paths: MigrationPaths, state: dict, migration: Migration) -> tuple[dict, int]:
    serving = read_serving(paths.output)
    legacy = RunPaths(state["legacy"]["output"], state["legacy"]["run_id"])
    if serving and serving["side"] == "legacy" and serving["run_id"] == legacy.run_id:
        return {"rolled_back": True, "already_serving": True, "serving": serving}, 0
    target = pointer("legacy", legacy, migration, reason="rollback")
    write_serving(paths.output, target)
    state["history"].append({"at": now(), "action": "rollback", "from": _brief(serving), "to": _brief(target)})
    write_state(paths, state)
    return {"rolled_back": True, "serving": target, "previous": _brief(serving)}, 0
