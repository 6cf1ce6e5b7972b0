"""The two vector spaces never mix: 001 vectors never enter an Embedding 2 index, a query
embedded by one model is never searched in the other's index (refused before any API call),
and a serving pointer that disagrees with its index is refused. Plus the money rules around
the migration: the budget refuses before any submission, and a killed re-embedding is
finished by the next one without paying twice."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from migrate_helpers import (  # noqa: F401 (fixtures)
    CORPUS,
    KEY_ENV,
    api_key,
    billed,
    emulator,
    legacy_vectors,
    migrate,
    migrate_with_stderr,
    write_config,
)
from pipeline.cli import main
from pipeline.migrate.state import read_state
from pipeline.migrate.layout import MigrationPaths
from pipeline.query import query_run
from pipeline.run import RunContext, load_run
from pipeline.run_layout import RunPaths
from run_helpers import assert_one_success_per_request_file, cli_env, embedpipe
from transforms.embeddings_schema import SchemaMismatchError
from transforms.index import IndexConfig, VectorSpaceMismatch, build_index

pytestmark = pytest.mark.slow


@pytest.fixture()
def migrated(tmp_path, capsys, emulator, legacy_vectors, api_key):
    """An output with the legacy store imported and a fifth of it re-embedded."""
    rows, vectors = legacy_vectors
    store = CORPUS.write_store(str(tmp_path / "legacy.parquet"), rows, vectors)
    config = write_config(tmp_path / "m.yaml", emulator[1])
    out = tmp_path / "out"
    assert migrate(capsys, "import", "--config", config, "--legacy", store, "--output", out)[0] == 0
    code, ran = migrate(capsys, "run", "--output", out, "--fraction", "0.2")
    assert code == 0
    state = read_state(MigrationPaths(str(out)))
    legacy = RunPaths(state["legacy"]["output"], state["legacy"]["run_id"])
    shadow = RunPaths(str(out / "migration" / "shadow"), ran["run_id"])
    return out, legacy, shadow


def test_001_vectors_never_enter_an_embedding_2_index(migrated, capsys):
    out, legacy, shadow = migrated
    intruder = next(Path(legacy.embeddings).glob("*.parquet"))
    shutil.copy(intruder, Path(shadow.embeddings) / "part-99999-of-99999.parquet")
    with pytest.raises(SchemaMismatchError, match="disagree on the vector space"):
        build_index(shadow.root, IndexConfig())
    code = main(["index", "--output", shadow.output, "--run", shadow.run_id])
    assert code != 0 and "gemini-embedding-001" in capsys.readouterr().err


def test_a_query_is_never_searched_in_the_other_models_index(migrated, emulator):
    server = emulator[0]
    out, legacy, shadow = migrated
    books = billed(server)
    new_settings, old_settings = load_run(shadow), load_run(legacy)
    with pytest.raises(VectorSpaceMismatch, match="must not mix"):
        query_run(RunContext(new_settings, legacy), text="volcanoes")  # Embedding 2 query, 001 index
    with pytest.raises(VectorSpaceMismatch, match="must not mix"):
        query_run(RunContext(old_settings, shadow), text="volcanoes")  # 001 query, Embedding 2 index
    assert billed(server) == books  # refused before anything was embedded
    hits = query_run(RunContext(old_settings, legacy), text="erupting volcanoes")
    assert hits and all(h["source_uri"].endswith(f"#{h['chunk_id']}") for h in hits)


def test_batch_queries_follow_the_serving_models_convention(migrated, capsys, tmp_path):
    """``query --queries`` through serving.json on the legacy side: each line is embedded as
    gemini-embedding-001 expects (raw text + taskType), exactly as a one-query call is."""
    out, _, _ = migrated
    assert json.loads((out / "serving.json").read_text())["model"] == "gemini-embedding-001"
    texts = ["erupting volcanoes", "marathon training plan"]
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(texts) + "\n")
    capsys.readouterr()
    assert main(["query", "--output", str(out), "--queries", str(queries), "-k", "3"]) == 0
    batch = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in batch] == texts
    for result, text in zip(batch, texts):
        assert main(["query", "--output", str(out), "--json", "-k", "3", text]) == 0
        single = json.loads(capsys.readouterr().out)
        assert [h["chunk_id"] for h in result["hits"]] == [h["chunk_id"] for h in single]
        assert [h["score"] for h in result["hits"]] == pytest.approx([h["score"] for h in single], abs=1e-5)


def test_a_serving_pointer_that_disagrees_with_its_index_is_refused(migrated, capsys, emulator):
    out, legacy, shadow = migrated
    serving = json.loads((out / "serving.json").read_text())
    assert serving["side"] == "legacy" and serving["query"] == {"prompt": "{content}", "task_type": "RETRIEVAL_QUERY"}
    (out / "serving.json").write_text(json.dumps({**serving, "model": "gemini-embedding-2"}))
    books = billed(emulator[0])
    capsys.readouterr()
    assert main(["query", "--output", str(out), "volcanoes"]) == 2
    assert "vector spaces never mix" in capsys.readouterr().err
    assert billed(emulator[0]) == books


def test_media_queries_are_refused_on_a_text_only_001_index(migrated, capsys, tmp_path):
    out, _, _ = migrated
    image = tmp_path / "dot.png"
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(image)
    capsys.readouterr()
    assert main(["query", "--output", str(out), "--image", str(image)]) == 2
    assert "gemini-embedding-001" in capsys.readouterr().err


def test_the_budget_refuses_before_any_submission(tmp_path, capsys, emulator, legacy_vectors, api_key):
    rows, vectors = legacy_vectors
    store = CORPUS.write_store(str(tmp_path / "legacy.parquet"), rows, vectors)
    config = write_config(tmp_path / "m.yaml", emulator[1], max_cost_usd=0.0001)
    out = tmp_path / "out"
    migrate(capsys, "import", "--config", config, "--legacy", store, "--output", out)
    books = billed(emulator[0])
    code, plan, err = migrate_with_stderr(capsys, "plan", "--output", out)
    assert code == 2 and not plan["within_budget"] and "max_cost_usd" in err
    code, _, err = migrate_with_stderr(capsys, "run", "--output", out)
    assert code == 2 and "max_cost_usd" in err
    assert billed(emulator[0]) == books
    assert read_state(MigrationPaths(str(out)))["runs"] == []
    code, plan = migrate(capsys, "plan", "--output", out, "--fraction", "0.05")
    assert code == 0 and plan["requested"] == "subset" and plan["within_budget"]


def test_a_killed_reembedding_is_finished_by_the_next_one_and_paid_once(
        tmp_path, capsys, emulator, legacy_vectors, api_key):
    server, base_url, key = emulator
    rows, vectors = legacy_vectors
    store = CORPUS.write_store(str(tmp_path / "legacy.parquet"), rows, vectors)
    config = write_config(tmp_path / "m.yaml", base_url, requests={"max_lines_per_file": 20})
    out = tmp_path / "out"
    assert migrate(capsys, "import", "--config", config, "--legacy", store, "--output", out)[0] == 0
    env = {**cli_env(crash_at="created"), KEY_ENV: key}
    crashed = embedpipe("migrate", "run", "--output", str(out), "--fraction", "0.5", env=env)
    assert crashed.returncode in (-9, 137), crashed.explain()
    code, summary = migrate(capsys, "run", "--output", out, "--fraction", "0.5")
    assert code == 0 and summary["resumed_runs"] and summary["up_to_date"]
    run = RunPaths(str(out / "migration" / "shadow"), summary["resumed_runs"][0])
    assert_one_success_per_request_file(Path(run.root), server.stats(), exclusive=False)
    state = read_state(MigrationPaths(str(out)))
    assert state["runs"][-1]["covered_rows"] == round(0.5 * len(rows))
