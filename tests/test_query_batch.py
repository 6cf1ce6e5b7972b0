"""Serving and gating with query-like vectors: ``embedpipe query --queries FILE`` (one
query per line in, JSONL out, the same hits as one query at a time) and
``index.eval_queries`` (the user's queries decide the recall gate)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.cli import main
from transforms.index import IndexConfig, build_index
from transforms.index.recall import query_like
from transforms.index.synthetic import gaussian_mixture, write_shards

from test_e2e_text import DOCS, LOCAL

QUERIES = ["magma and lava", "", "queen bee workers", "   ", "chess opening e4", "green tea leaves"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    queries = root / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n")
    output = root / "out"
    assert main(["run", "--config", LOCAL, "--sources", str(corpus), "--output", str(output),
                 "--set", f"index.eval_queries={queries}"]) == 0
    return output, queries


def _run_dir(output: Path) -> Path:
    return output / "runs" / json.loads((output / "current.json").read_text())["run_id"]


@pytest.mark.slow
def test_batch_queries_give_one_line_each_with_the_single_query_hits(finished_run, capsys):
    output, queries = finished_run
    capsys.readouterr()
    assert main(["query", "--output", str(output), "--queries", str(queries), "-k", "3"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["line"], r["query"]) for r in results] == [
        (1, "magma and lava"), (3, "queen bee workers"), (5, "chess opening e4"), (6, "green tea leaves")]
    for result in results:
        assert main(["query", "--output", str(output), result["query"], "-k", "3", "--json"]) == 0
        assert result["hits"] == json.loads(capsys.readouterr().out)
    assert results[2]["hits"][0]["source_uri"].endswith("chess.txt")


@pytest.mark.slow
def test_batch_queries_read_stdin_and_refuse_a_second_query_form(finished_run, capsys, monkeypatch):
    output, queries = finished_run
    monkeypatch.setattr("sys.stdin", io.StringIO("magma and lava\n"))
    capsys.readouterr()
    assert main(["query", "--output", str(output), "--queries", "-"]) == 0
    assert [json.loads(x)["query"] for x in capsys.readouterr().out.splitlines()] == ["magma and lava"]
    assert main(["query", "--output", str(output), "--queries", str(queries), "lava"]) == 2
    assert "not several" in capsys.readouterr().err
    assert main(["query", "--output", str(output), "--queries", str(queries) + ".missing"]) == 2


@pytest.mark.slow
def test_user_queries_decide_the_gate_and_corpus_recall_is_still_reported(finished_run):
    output, _ = finished_run
    report = json.loads((_run_dir(output) / "index" / "report.json").read_text())
    assert report["recall"]["gate_queries"] == "user" and report["recall"]["queries"] == 4
    assert "index.eval_queries" in report["recall"]["method"]
    assert report["recall"]["corpus_leave_one_out"]["sweep"]
    assert (_run_dir(output) / "index" / "eval_queries.npy").read_bytes()[:6] == b"\x93NUMPY"


def test_a_missing_eval_queries_file_is_a_config_error_naming_the_key(tmp_path, capsys):
    code = main(["plan", "--config", LOCAL, "--sources", str(tmp_path), "--output",
                 str(tmp_path / "out"), "--set", f"index.eval_queries={tmp_path / 'nope.txt'}"])
    assert code == 2 and "index.eval_queries" in capsys.readouterr().err


def test_query_like_vectors_are_unit_deterministic_and_off_the_corpus():
    x = gaussian_mixture(500, 96, clusters=10, seed=2)
    a, b = query_like(x, seed=7), query_like(x, seed=7)
    assert np.array_equal(a, b) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    cos = np.einsum("ij,ij->i", a, x)
    assert 0.5 < cos.mean() < 0.9  # moved well away from the source, not unrelated to it


@pytest.mark.slow
def test_the_gate_no_longer_passes_nprobe_1_on_corpus_vectors_alone(tmp_path):
    """The issue's case: corpus vectors reach the target at nprobe 1, query-like vectors
    need more lists; the gate must pick what query-like vectors need."""
    x = gaussian_mixture(20_000, 128, clusters=300, noise=0.5, seed=9)
    write_shards(str(tmp_path), x, 2)
    report = build_index(str(tmp_path), IndexConfig(nlist=128, target_recall_at_10=0.95),
                         PipelineOptions(["--runner=FnApiRunner"]))
    corpus = {p["nprobe"]: p["recall_at_10"] for p in report["recall"]["corpus_leave_one_out"]["sweep"]}
    gate = {p["nprobe"]: p["recall_at_10"] for p in report["recall"]["sweep"]}
    assert corpus[1] >= 0.95 and gate[1] < 0.95
    assert report["recall"]["gate_queries"] == "proxy"
    assert report["chosen_nprobe"] > 1 and gate[report["chosen_nprobe"]] >= 0.95
