"""The migration's pure parts: the stratified sample, records materialisation (task-type
prompts, splitting), the task-type mapping file, the report's metrics and the gate."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError
from pipeline.migrate import metrics
from pipeline.migrate.config import GateSettings, TaskTypeMap, load_task_types
from pipeline.migrate.cutover import gate_check
from pipeline.migrate.evaluate import read_queries
from pipeline.migrate.sample import record_rows, select_units
from transforms.chunk_records import record_chunk
from transforms.prompts import TASK_TYPES, QueryConvention
from transforms.settings import ChunkSettings
from transforms.types import SourceObject

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MAPPING = load_task_types(CONFIGS / "task_types.yaml")


# -- the stratified sample ---------------------------------------------------------------
def _population():
    units = [f"t:doc{i}" for i in range(1000)]
    strata = ["news|len9"] * 600 + ["news|len12"] * 300 + ["wiki|len10"] * 90 + ["rare|len3"] * 10
    return units, strata


def test_sample_is_deterministic_proportional_per_stratum_and_exact_in_size():
    units, strata = _population()
    chosen = select_units(units, strata, 0.1)
    assert chosen == select_units(list(reversed(units)), list(reversed(strata)), 0.1)
    assert len(chosen) == 100
    stratum_of = dict(zip(units, strata))
    assert Counter(stratum_of[u] for u in chosen) == {"news|len9": 60, "news|len12": 30, "wiki|len10": 9,
                                                       "rare|len3": 1}


def test_a_larger_fraction_takes_a_superset_and_one_takes_everything():
    units, strata = _population()
    small, large = select_units(units, strata, 0.05), select_units(units, strata, 0.3)
    assert small < large
    assert select_units(units, strata, 1.0) == set(units)
    assert len(select_units(units[:3], strata[:3], 0.01)) == 1  # a tiny fraction still samples


def test_a_unit_with_many_rows_counts_once():
    units = ["o:gs://b/a.pdf"] * 5 + ["t:x", "t:y"]
    assert select_units(units, ["s"] * 7, 1.0) == {"o:gs://b/a.pdf", "t:x", "t:y"}
    assert len(select_units(units, ["s"] * 7, 0.34)) == 1


# -- materialised records ----------------------------------------------------------------
def test_a_row_over_the_token_bound_is_split_and_every_piece_maps_back(limits):
    prefix = MAPPING.document_prefix("RETRIEVAL_DOCUMENT", "Long")
    text = " ".join(f"word{i}" for i in range(3000))  # ~26 kB: over Embedding 2's 7,782-byte bound
    pieces = record_rows("doc-7", text, prefix, limits.text_byte_budget)
    assert len(pieces) > 1 and {p["legacy_id"] for p in pieces} == {"doc-7"}
    assert [p["id"] for p in pieces] == [f"doc-7~{n}" for n in range(1, len(pieces) + 1)]
    assert all(len((prefix + p["text"]).encode()) <= limits.text_byte_budget for p in pieces)
    assert "".join(p["text"] for p in pieces) == text
    assert record_rows("doc-8", "short", prefix, limits.text_byte_budget) == [
        {"id": "doc-8", "legacy_id": "doc-8", "prefix": prefix, "text": "short"}]


@pytest.mark.parametrize("task, expected", [
    ("RETRIEVAL_DOCUMENT", "title: Bees | text: Bees make honey."),
    ("CLASSIFICATION", "task: classification | query: Bees make honey."),
    ("SEMANTIC_SIMILARITY", "task: sentence similarity | query: Bees make honey."),
])
def test_records_rows_are_embedded_with_their_translated_task_prompt(task, expected, limits):
    row = record_rows("b1", "Bees make honey.", MAPPING.document_prefix(task, "Bees"), limits.text_byte_budget)[0]
    source = SourceObject("/m/rows.jsonl", 10, "g", "records", "application/jsonl")
    chunk = record_chunk(source, 1, row, ChunkSettings(limits=limits), None, None)
    assert chunk.parts == ({"text": expected},) and chunk.source_uri == "/m/rows.jsonl#b1"


# -- the task-type mapping ---------------------------------------------------------------
def test_the_mapping_covers_every_001_task_type_for_documents_and_queries():
    assert set(MAPPING.document) == set(MAPPING.query) == set(TASK_TYPES)
    assert MAPPING.query_prompt("RETRIEVAL_QUERY") == "task: search result | query: {content}"
    assert MAPPING.query_prompt("QUESTION_ANSWERING") == "task: question answering | query: {content}"
    assert MAPPING.document["CLUSTERING"] == MAPPING.query["CLUSTERING"]  # symmetric tasks
    assert MAPPING.document_prefix("FACT_VERIFICATION", None) == "title: none | text: "


def test_a_broken_mapping_names_the_entry(tmp_path):
    tree = yaml.safe_load((CONFIGS / "task_types.yaml").read_text())
    del tree["task_types"]["CLUSTERING"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match="missing: \\['CLUSTERING'\\]"):
        load_task_types(tmp_path / "a.yaml")
    tree = yaml.safe_load((CONFIGS / "task_types.yaml").read_text())
    tree["task_types"]["CLASSIFICATION"]["query"] = "task: classification"
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match="task_types.CLASSIFICATION.query"):
        load_task_types(tmp_path / "b.yaml")
    assert TaskTypeMap.from_json(MAPPING.to_json()) == MAPPING


def test_query_conventions_per_model():
    old = QueryConvention.for_model("gemini-embedding-001", task_type="QUESTION_ANSWERING")
    assert (old.text("why?"), old.task_type) == ("why?", "QUESTION_ANSWERING")
    new = QueryConvention.for_model("gemini-embedding-2", prompt=MAPPING.query_prompt("QUESTION_ANSWERING"))
    assert (new.text("why?"), new.task_type) == ("task: question answering | query: why?", None)


# -- metrics -----------------------------------------------------------------------------
def test_metrics_on_known_rankings():
    ranked, relevant = ["a", "x", "b", "y"], {"a", "b", "c"}
    assert metrics.recall_at_k(ranked, relevant, 4) == pytest.approx(2 / 3)
    assert metrics.reciprocal_rank(["x", "b"], relevant, 4) == 0.5
    assert metrics.reciprocal_rank(["x", "y"], relevant, 2) == 0.0
    assert metrics.ndcg_at_k(["a", "b", "c"], relevant, 3) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(ranked, relevant, 4) == pytest.approx((1 + 1 / 2) / (1 + 1 / 1.5849625 + 1 / 2))
    assert metrics.overlap_at_k(["a", "b", "c"], ["c", "d", "a"], 3) == pytest.approx(2 / 3)
    assert metrics.rank_correlation(["a", "b", "c"], ["a", "b", "c"], 3) == pytest.approx(1.0)
    assert metrics.rank_correlation(["a", "b", "c"], ["c", "b", "a"], 3) == pytest.approx(-1.0)
    assert metrics.rank_correlation(["a", "b"], ["c", "d"], 2) is None


def test_threshold_map_pairs_cut_offs_at_the_same_percentile():
    old = [i / 100 for i in range(100)]          # 0.00 .. 0.99
    new = [0.5 + i / 200 for i in range(100)]    # 0.50 .. 0.995: same order, another scale
    pairs = metrics.threshold_map(old, new, [0.25, 0.8])
    assert [p["percentile"] for p in pairs] == [25.0, 80.0]
    # the new scores at those percentiles (linear interpolation between ranks 24.75 and 79.2)
    assert [p["new"] for p in pairs] == [pytest.approx(0.5 + 24.75 / 200), pytest.approx(0.5 + 79.2 / 200)]


# -- the gate ----------------------------------------------------------------------------
def _report(labelled=10, delta=0.0, overlap=0.9, coverage=1.0, run_id="r2"):
    return {"k": 10, "new": {"run_id": run_id, "coverage": coverage, "covered_rows": 10},
            "legacy": {"rows": 10}, "queries": {"labelled": labelled, "used": 20},
            "metrics": {"legacy": {"recall_at_k": 0.8}, "new": {"recall_at_k": 0.8 + delta},
                        "delta": {"recall_at_k": delta}},
            "agreement": {"overlap_at_k": overlap}}


@pytest.mark.parametrize("report, latest, passed, basis, failing", [
    (_report(delta=-0.005), "r2", True, "labels", []),
    (_report(delta=-0.02, overlap=1.0), "r2", False, "labels", ["recall_at_k_delta"]),
    (_report(labelled=2, overlap=0.4), "r2", False, "overlap", ["overlap_at_k"]),
    (_report(labelled=0, overlap=0.7), "r2", True, "overlap", []),
    (_report(coverage=0.1), "r2", False, "labels", ["coverage"]),
    (_report(), "r3", False, "labels", ["evaluated_latest_run"]),
])
def test_gate(report, latest, passed, basis, failing):
    result = gate_check(report, GateSettings(), latest)
    assert result["passed"] is passed and result["basis"] == basis
    assert [c["check"] for c in result["checks"] if not c["passed"]] == failing


def test_no_report_never_passes_the_gate():
    assert not gate_check(None, GateSettings(), "r1")["passed"]


def test_a_bad_query_line_is_reported_and_the_others_are_used(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "glaciers"}\n\nnot json\n{"query": " "}\n'
                    '{"query": "bees", "relevant_ids": "b-1"}\n{"query": "tides", "relevant_ids": [7, "t-1"]}\n')
    queries, problems = read_queries(str(path))
    assert [(q.line, q.text, q.relevant) for q in queries] == [(1, "glaciers", None), (6, "tides", ("7", "t-1"))]
    assert [p["line"] for p in problems] == [3, 4, 5]
    path.write_text("not json\n")
    with pytest.raises(ConfigError, match="no usable query lines"):
        read_queries(str(path))
