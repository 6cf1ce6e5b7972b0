"""End to end on the embedded default: text files in, Parquet vectors, a searchable
index, dead letters for bad inputs, and a manifest whose counts add up."""
from __future__ import annotations

import codecs
import glob
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from transforms.embeddings_schema import validate_metadata

REPO = Path(__file__).resolve().parents[1]
LOCAL = str(REPO / "configs" / "local.yaml")

DOCS = {
    "volcanoes.txt": "Volcanoes erupt when magma rises through the crust, releasing lava, ash and gas.",
    "bees.txt": "Honeybee colonies rely on a queen, thousands of workers and drones that mate.",
    "chess.txt": "The Sicilian Defence is a sharp chess opening that answers e4 with c5.",
    "tea.txt": "Tea bushes grow on misty hillsides; leaves are withered, rolled and oxidised.",
}


def make_corpus(root: Path) -> Path:
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text + "\n\n" + text.lower())
    (corpus / "long_line.txt").write_text(("glacier ice moves slowly downhill " * 700)[:20000])
    (corpus / "utf16.txt").write_bytes(codecs.BOM_UTF16_LE + "Grüße vom Bodensee".encode("utf-16-le"))
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (corpus / "latin1.txt").write_bytes("Crème brûlée à la française".encode("latin-1"))
    return corpus


def run(corpus: Path, output: Path, *extra: str) -> int:
    return main(["run", "--config", LOCAL, "--sources", str(corpus), "--output", str(output),
                 "--set", "text.target_chars=600", "--set", "text.overlap_chars=60", *extra])


def run_dir(output: Path) -> Path:
    current = json.loads((output / "current.json").read_text()) if (output / "current.json").exists() else None
    runs = sorted((output / "runs").iterdir())
    return output / "runs" / current["run_id"] if current else runs[-1]


def jsonl(pattern: str) -> list[dict]:
    rows = []
    for path in glob.glob(pattern):
        rows += [json.loads(l) for l in open(path) if l.strip()]
    return rows


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    corpus = make_corpus(root)
    output = root / "out"
    code = run(corpus, output)
    return corpus, output, code


@pytest.mark.slow
def test_run_completes_and_reports_dead_letters_by_exit_code(finished_run):
    _corpus, _output, code = finished_run
    assert code == 3  # completed, but 2 of 9 objects dead-lettered (tolerance 0)


@pytest.mark.slow
def test_every_chunk_of_every_good_document_is_embedded_once(finished_run):
    _corpus, output, _ = finished_run
    rd = run_dir(output)
    table = pq.read_table(str(rd / "embeddings"))
    meta = validate_metadata(pq.read_schema(glob.glob(str(rd / "embeddings" / "*.parquet"))[0]),
                             model="gemini-embedding-2", dimensionality=768, normalized=True)
    assert meta.dimensionality == 768
    ids = table.column("chunk_id").to_pylist()
    assert len(ids) == len(set(ids))
    sources = {os.path.basename(u) for u in table.column("source_uri").to_pylist()}
    assert sources == set(DOCS) | {"long_line.txt", "utf16.txt"}
    planned = sum(f["lines"] for f in json.loads((rd / "requests" / "files.json").read_text()))
    assert table.num_rows == planned
    long_rows = [r for r in table.to_pylist() if r["source_uri"].endswith("long_line.txt")]
    assert len(long_rows) >= 30 and max(r["end"] for r in long_rows) == 20000


@pytest.mark.slow
def test_bad_inputs_are_dead_letters_with_reasons_and_empty_is_recorded(finished_run):
    _corpus, output, _ = finished_run
    rd = run_dir(output)
    dead = {os.path.basename(d["source_uri"]): d for d in jsonl(str(rd / "deadletters" / "*.jsonl"))}
    assert set(dead) == {"binary.txt", "latin1.txt"}
    assert dead["latin1.txt"]["error_class"] == "undecodable_text"
    assert "not UTF-8" in dead["latin1.txt"]["message"]
    assert dead["binary.txt"]["stage"] == "chunk"
    listing = {os.path.basename(o["uri"]): o for o in jsonl(str(rd / "listing" / "*.jsonl"))}
    assert listing["empty.txt"]["status"] == "empty"


@pytest.mark.slow
def test_manifest_counts_add_up(finished_run):
    _corpus, output, _ = finished_run
    manifest = json.loads((run_dir(output) / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["listed"] == 9
    assert c["listed"] == c["chunked_objects"] + c["empty_objects"] + c["dead_objects"] + c["unchanged"]
    assert c["chunks"] == c["embedded_rows"] + c["dead_chunks"]
    assert manifest["tokens"]["billed"] > 0
    assert all(len(v) == 64 for v in manifest["outputs"].values())


@pytest.mark.slow
def test_query_finds_a_verbatim_chunk_first(finished_run, capsys):
    _corpus, output, _ = finished_run
    rd = run_dir(output)
    capsys.readouterr()
    code = main(["query", "--output", str(output), "--run", rd.name, DOCS["chess.txt"], "--json"])
    hits = json.loads(capsys.readouterr().out)
    assert code == 0
    assert os.path.basename(hits[0]["source_uri"]) == "chess.txt"


@pytest.mark.slow
def test_rerun_writes_byte_identical_request_files(finished_run, tmp_path):
    corpus, _output, _ = finished_run
    first_out, second_out = tmp_path / "a", tmp_path / "b"
    for out in (first_out, second_out):
        assert main(["plan", "--config", LOCAL, "--sources", str(corpus), "--output", str(out),
                     "--set", "text.target_chars=600", "--set", "text.overlap_chars=60"]) == 0
    a = sorted(glob.glob(str(next((first_out / "runs").iterdir()) / "requests" / "*.jsonl")))
    b = sorted(glob.glob(str(next((second_out / "runs").iterdir()) / "requests" / "*.jsonl")))
    plan = json.loads((next((first_out / "runs").iterdir()) / "plan.json").read_text())
    assert a and len(a) == plan["request_files"]  # two empty lists would prove nothing
    assert sum(1 for p in a for _ in open(p)) == sum(plan["chunks_by_modality"].values()) > 30
    assert [os.path.basename(p) for p in a] == [os.path.basename(p) for p in b]
    assert all(open(x, "rb").read() == open(y, "rb").read() for x, y in zip(a, b))


@pytest.mark.slow
def test_multi_processing_runner_catches_worker_import_problems(tmp_path):
    corpus = make_corpus(tmp_path)
    code = run(corpus, tmp_path / "out", "--direct_running_mode=multi_processing",
               "--direct_num_workers=2", "--set", "deadletter_tolerance=0.5")
    assert code == 0
    assert pq.read_table(str(run_dir(tmp_path / "out") / "embeddings")).num_rows > 0
