"""``migrate import``: Parquet, JSON Lines, Avro (BigQuery's export formats), a column
mapping, and an embedpipe run made with gemini-embedding-001 — bad rows become dead letters
with their reason, good rows become schema-v1 vectors bound to 001, indexed like any run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from migrate_helpers import (  # noqa: F401 (fixtures)
    CORPUS,
    api_key,
    emulator,
    legacy_vectors,
    migrate,
    migrate_with_stderr,
    write_config,
)
from pipeline.cli import main
from transforms.embeddings_schema import validate_metadata

pytestmark = pytest.mark.slow

BAD = {  # legacy id -> the reason its row must be refused
    "dup": "duplicate_id",
    "short": "wrong_dimensionality",
    "nan": "non_finite",
    "zeros": "zero_norm",
    "blank": "empty_text",
    "task": "unknown_task_type",
    "novec": "missing_embedding",
}


def _store_rows(rows, vectors, n_good: int = 12) -> tuple[list[dict], int]:
    """``n_good`` good rows (one of them not unit-norm) plus one row per reason in BAD."""
    good = [{"id": r["id"], "text": r["text"], "title": r["title"], "task_type": r["task_type"],
             "embedding": [float(x) for x in v]} for r, v in zip(rows[:n_good], vectors[:n_good])]
    good[1]["embedding"] = [3.0 * x for x in good[1]["embedding"]]  # legal: 001 below 3,072 is not unit
    base = dict(good[0])
    bad = [
        {**base, "id": good[2]["id"], "text": "a second row with an id already imported"},
        {**base, "id": "short", "embedding": base["embedding"][:-1]},
        {**base, "id": "nan", "embedding": [math.nan] + base["embedding"][1:]},
        {**base, "id": "zeros", "embedding": [0.0] * len(base["embedding"])},
        {**base, "id": "blank", "text": "   "},
        {**base, "id": "task", "task_type": "RETRIEVAL_PASSAGE"},
        {**base, "id": "novec", "embedding": None},
        {**base, "id": None},
    ]
    return good + bad, n_good


def _check_import(out: Path, summary: dict, n_good: int, extra_reasons: dict | None = None) -> None:
    expected = {reason: 1 for reason in BAD.values()} | {"missing_id": 1} | (extra_reasons or {})
    assert summary["dead_letters_by_reason"] == expected
    assert summary["imported"] == n_good and summary["renormalised"] >= 1
    run = next((out / "migration" / "legacy" / "runs").iterdir())
    letters = [json.loads(line) for line in (run / "deadletters" / "import.jsonl").read_text().splitlines()]
    assert {(d["chunk_id"], d["error_class"]) for d in letters if d["chunk_id"] in BAD} == set(BAD.items()) - {("dup", "duplicate_id")}
    assert all(d["stage"] == "import" and d["message"] and "#row=" in d["source_uri"] for d in letters)
    tables = [pq.read_table(p) for p in sorted((run / "embeddings").glob("*.parquet"))]
    for table in tables:
        meta = validate_metadata(table.schema, model="gemini-embedding-001", dimensionality=768, normalized=True)
        assert meta.model == "gemini-embedding-001"
    table = pa.concat_tables(tables)
    assert table.num_rows == n_good and len(set(table.column("chunk_id").to_pylist())) == n_good
    vectors = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(n_good, 768)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    index = json.loads((run / "index" / "report.json").read_text())
    assert index["n"] == n_good and index["space"]["model"] == "gemini-embedding-001"


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_parquet_and_jsonl_with_bad_rows(fmt, tmp_path, capsys, emulator, legacy_vectors, api_key):
    records, n_good = _store_rows(*legacy_vectors)
    path = tmp_path / f"legacy.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        lines = [json.dumps(r) for r in records] + ["{not json", "[1, 2]"]
        path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    config = write_config(tmp_path / "m.yaml", emulator[1])
    code, summary, err = migrate_with_stderr(capsys, "import", "--config", config, "--legacy", path, "--output", out)
    assert code == 3, err  # dead letters over the default tolerance (0): reported, index still built
    _check_import(out, summary, n_good, {"unreadable_row": 2} if fmt == "jsonl" else None)
    assert json.loads((out / "serving.json").read_text())["model"] == "gemini-embedding-001"


def test_avro_export_with_a_column_mapping_and_tolerance(tmp_path, capsys, emulator, legacy_vectors, api_key):
    records, n_good = _store_rows(*legacy_vectors)
    schema = {"type": "record", "name": "Row", "fields": [
        {"name": "doc_id", "type": ["null", "string"]},
        {"name": "body", "type": ["null", "string"]},
        {"name": "heading", "type": ["null", "string"]},
        {"name": "kind", "type": ["null", "string"]},
        {"name": "vec", "type": ["null", {"type": "array", "items": "double"}]},
    ]}
    renamed = [{"doc_id": r["id"], "body": r["text"], "heading": r["title"], "kind": r["task_type"],
                "vec": r["embedding"]} for r in records]
    path = tmp_path / "export-000000000000.avro"
    with open(path, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(schema), renamed)
    config = write_config(tmp_path / "m.yaml", emulator[1], {"columns": {
        "id": "doc_id", "text": "body", "title": "heading", "task_type": "kind", "embedding": "vec"}},
        deadletter_tolerance=0.5)
    out = tmp_path / "out"
    code, summary = migrate(capsys, "import", "--config", config, "--legacy", tmp_path / "*.avro", "--output", out)
    assert code == 0  # 8 bad rows of 20 are within the configured tolerance
    _check_import(out, summary, n_good)
    rows = pq.read_table(next((out / "migration" / "legacy" / "runs").iterdir()) / "rows" / "part-00000.parquet")
    first = rows.to_pylist()[0]
    assert first["title"] == records[0]["title"] and first["unit"] == f"t:{records[0]['id']}"


def test_config_errors_name_the_key(tmp_path, capsys, emulator, legacy_vectors):
    rows, vectors = legacy_vectors
    store = CORPUS.write_store(str(tmp_path / "legacy.parquet"), rows[:3], vectors[:3])
    bad = write_config(tmp_path / "bad.yaml", emulator[1], {"query_task_type": "SEARCH"})
    code, _, err = migrate_with_stderr(capsys, "import", "--config", bad, "--legacy", store, "--output", tmp_path / "o")
    assert code == 2 and "migration.query_task_type" in err
    wrong_target = write_config(tmp_path / "t.yaml", emulator[1], model="gemini-embedding-001")
    code, _, err = migrate_with_stderr(capsys, "import", "--config", wrong_target, "--legacy", store,
                                       "--output", tmp_path / "o")
    assert code == 2 and "model:" in err
    good = write_config(tmp_path / "good.yaml", emulator[1])
    code, _, err = migrate_with_stderr(capsys, "import", "--config", good, "--legacy", tmp_path / "nothing-here",
                                       "--output", tmp_path / "o")
    assert code == 2 and "--legacy" in err
    code, _, err = migrate_with_stderr(capsys, "plan", "--output", tmp_path / "never-imported")
    assert code == 2 and "migrate import" in err


def test_an_embedpipe_001_run_is_a_legacy_store_and_a_gemini_embedding_2_run_is_not(
        tmp_path, capsys, emulator, api_key):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for topic in ("glaciers", "penguins", "tides", "origami"):
        (corpus / f"{topic}.txt").write_text(CORPUS.CORPUS[topic])
    local = str(Path(__file__).resolve().parents[1] / "configs" / "local.yaml")
    old = tmp_path / "old"
    assert main(["run", "--config", local, "--sources", str(corpus), "--output", str(old),
                 "--set", "model=gemini-embedding-001", "--set", "index.enabled=false"]) == 0
    capsys.readouterr()
    config = write_config(tmp_path / "m.yaml", emulator[1])
    out = tmp_path / "out"
    code, summary = migrate(capsys, "import", "--config", config, "--legacy", old, "--output", out)
    assert code == 0 and summary["format"] == ["embedpipe"] and summary["imported"] >= 4
    code, ran = migrate(capsys, "run", "--output", out)  # objects re-chunked by the normal chunkers
    assert code == 0 and ran["coverage"] == 1.0 and ran["documents"] == 4
    legacy_groups = {r["group"] for r in pq.read_table(ran["legacy_ids"]).to_pylist()}
    assert legacy_groups == {str(p) for p in corpus.iterdir()}

    new = tmp_path / "new"
    assert main(["run", "--config", local, "--sources", str(corpus), "--output", str(new),
                 "--set", "index.enabled=false"]) == 0
    capsys.readouterr()
    code, _, err = migrate_with_stderr(capsys, "import", "--config", config, "--legacy", new,
                                       "--output", tmp_path / "out2")
    assert code == 2 and "gemini-embedding-2" in err and "never mix" in err
