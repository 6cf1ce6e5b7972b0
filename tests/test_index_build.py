"""BuildIndex end to end on small synthetic corpora (FnApiRunner, seconds per build)."""

import json
import os

import apache_beam as beam
import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.embeddings_schema import SchemaMismatchError
from transforms.index import (
    BuildIndex,
    IndexConfig,
    IndexSearcher,
    RecallTargetUnreachable,
    VectorSpaceMismatch,
    build_index,
)
from transforms.index.plan import global_ids
from transforms.index.synthetic import chunk_id, gaussian_mixture, write_shards

pytestmark = pytest.mark.slow  # real pipelines, seconds each

N, D, SHARDS = 12_000, 32, 3
FNAPI = ["--runner=FnApiRunner"]


@pytest.fixture(scope="module")
def corpus():
    return gaussian_mixture(N, D, clusters=60, seed=3)


def _run(tmp_path_factory, x, config, shards=SHARDS, name="run"):
    run = str(tmp_path_factory.mktemp(name))
    write_shards(run, x, shards)
    return run, build_index(run, config, PipelineOptions(FNAPI))


def _ids_in_file_order(run):
    """Global ids of every corpus row, in the order the rows were written."""
    parts = sorted(os.listdir(os.path.join(run, "embeddings")))
    rows = [pq.ParquetFile(os.path.join(run, "embeddings", p)).metadata.num_rows for p in parts]
    return np.concatenate([global_ids(s, np.arange(r)) for s, r in enumerate(rows)])


@pytest.fixture(scope="module")
def flat_run(tmp_path_factory, corpus):
    return _run(tmp_path_factory, corpus, IndexConfig(nlist=64, seed=1), name="flat")


@pytest.mark.parametrize("factory", ["IVF64,Flat", "IVF64,SQ8"])
def test_sharded_build_equals_single_process_build(tmp_path_factory, corpus, factory):
    run, report = _run(tmp_path_factory, corpus, IndexConfig(factory=factory), name="eq")
    assert report["factory"] == factory and report["shards"] == SHARDS
    single = faiss.read_index(os.path.join(run, "index", "trained.index"))
    single.add_with_ids(corpus, _ids_in_file_order(run))
    merged = faiss.read_index(os.path.join(run, "index", "merged.index"))
    assert merged.ntotal == single.ntotal == N
    queries = corpus[::97]
    for nprobe in (1, 4, 16, 64):
        merged.nprobe = single.nprobe = nprobe
        d1, i1 = merged.search(queries, 10)
        d2, i2 = single.search(queries, 10)
        assert np.array_equal(i1, i2) and np.array_equal(d1, d2)


def test_ids_map_back_to_chunks_and_members_find_themselves(flat_run, corpus):
    run, report = flat_run
    searcher = IndexSearcher.open(os.path.join(run, "index"))
    assert searcher.nprobe == report["chosen_nprobe"]
    rows = np.arange(0, N, 611)
    hits = searcher.search(corpus[rows], 3)
    assert [h[0].chunk_id for h in hits] == [chunk_id(r) for r in rows]
    assert all(h[0].score == pytest.approx(1.0, abs=1e-5) for h in hits)
    first = hits[0][0]
    assert (first.source_uri, first.modality, first.unit, first.start, first.end) == (
        "synthetic://doc-00000000",
        "text",
        "chars",
        0.0,
        1000.0,
    )
    ids_file = pq.read_table(os.path.join(run, "index", "shards", "shard-00001.ids.parquet"))
    assert ids_file.column_names == [
        "id",
        "chunk_id",
        "source_uri",
        "modality",
        "unit",
        "start",
        "end",
    ]
    assert ids_file.column("id")[0].as_py() == 1 << 40


def test_report_has_every_key_and_a_plot(flat_run):
    run, report = flat_run
    on_disk = json.loads(open(os.path.join(run, "index", "report.json")).read())
    assert on_disk == json.loads(json.dumps(report))
    for key in (
        "factory",
        "metric",
        "nlist",
        "codec",
        "n",
        "d",
        "train_sample_size",
        "timings_seconds",
        "peak_memory_bytes",
        "bytes_per_vector",
        "index_bytes",
        "recall",
        "chosen_nprobe",
        "reasons",
        "space",
        "imbalance_factor",
        "memory_budget",
        "threads",
        "serving",
        "config",
    ):
        assert key in report, key
    assert report["metric"] == "inner_product" and report["n"] == N and report["d"] == D
    assert set(report["timings_seconds"]) >= {"sample", "train", "add", "merge", "recall"}
    assert report["space"] == {
        "model": "gemini-embedding-2",
        "dimensionality": D,
        "normalized": True,
    }
    assert report["train_sample_size"] == 64 * 64
    assert set(report["reasons"]) >= {
        "index_type",
        "nlist",
        "codec",
        "train_sample",
        "merge",
        "nprobe",
    }
    sweep = report["recall"]["sweep"]
    assert [p["nprobe"] for p in sweep] == [1, 2, 4, 8, 16, 32, 64]
    assert all({"recall_at_1", "recall_at_10", "qps"} <= set(p) for p in sweep)
    assert sweep[-1]["recall_at_10"] == 1.0  # every list probed: exact
    assert report["recall"]["target_met"] and report["imbalance_factor"] >= 1.0
    assert report["config"]["nlist"] == 64 and report["config"]["seed"] == 1
    assert open(os.path.join(run, "index", "recall_vs_nprobe.png"), "rb").read(4) == b"\x89PNG"


@pytest.mark.parametrize("factory", [None, "IVF64_HNSW32,SQ8"])
def test_merge_modes_give_identical_results(tmp_path_factory, corpus, flat_run, factory):
    runs = {"ram": flat_run[0]} if factory is None else {}
    for mode in ("ram", "ondisk", "shards"):
        if mode not in runs:
            config = IndexConfig(nlist=None if factory else 64, factory=factory, seed=1, merge=mode)
            runs[mode] = _run(tmp_path_factory, corpus, config, name=mode)[0]
    index_files = {m: sorted(os.listdir(os.path.join(r, "index"))) for m, r in runs.items()}
    assert "merged.index" in index_files["ram"] and "merged.ivfdata" in index_files["ondisk"]
    assert "merged.index" not in index_files["shards"]
    assert all("sample" not in files for files in index_files.values())
    searchers = {m: IndexSearcher.open(os.path.join(r, "index")) for m, r in runs.items()}
    queries = corpus[5::131]
    for nprobe in (1, 8, 64):
        results = {}
        for mode, s in searchers.items():
            s.set_nprobe(nprobe)
            results[mode] = s.search_ids(queries, 10)
        for mode in ("ondisk", "shards"):
            assert np.array_equal(results[mode][1], results["ram"][1]), (mode, nprobe)
            assert np.array_equal(results[mode][0], results["ram"][0]), (mode, nprobe)


def test_pq_with_refine_finds_members(tmp_path_factory, corpus):
    run, report = _run(
        tmp_path_factory,
        corpus,
        IndexConfig(nlist=64, memory_budget="400K", target_recall_at_10=0.8),
        name="pq",
    )
    assert report["codec"].endswith("x4fs") and report["refine"]["store"] == "float16"
    assert report["bytes_per_vector"] < 4 * D
    searcher = IndexSearcher.open(os.path.join(run, "index"))
    rows = np.arange(3, N, 977)
    hits = searcher.search(corpus[rows], 5)
    assert [h[0].chunk_id for h in hits] == [chunk_id(r) for r in rows]


@pytest.mark.parametrize(
    "config, noise",
    [
        (IndexConfig(nlist=64, target_recall_at_10=1.01), 1.0),
        (IndexConfig(nlist=64, max_nprobe=1, target_recall_at_10=1.0), 3.0),
    ],
)
def test_recall_gate_raises_and_still_reports(tmp_path_factory, config, noise):
    x = gaussian_mixture(N, D, clusters=60, noise=noise, seed=4)
    run = str(tmp_path_factory.mktemp("gate"))
    write_shards(run, x, SHARDS)
    with pytest.raises(RecallTargetUnreachable, match="recall"):
        build_index(run, config, PipelineOptions(FNAPI))
    report = json.loads(open(os.path.join(run, "index", "report.json")).read())
    assert report["recall"]["target_met"] is False and report["chosen_nprobe"] is None
    with pytest.raises(RuntimeError, match="recall gate"):
        IndexSearcher.open(os.path.join(run, "index"))


def test_small_corpus_falls_back_to_exact(tmp_path_factory):
    x = gaussian_mixture(600, D, clusters=10, seed=5)
    run, report = _run(tmp_path_factory, x, IndexConfig(), shards=2, name="exact")
    assert report["index_type"] == "exact" and report["nlist"] == 1
    assert "exact" in report["reasons"]["index_type"]
    assert report["chosen_nprobe"] == 1
    assert report["recall"]["sweep"][0]["recall_at_10"] == 1.0
    assert report["recall"]["sweep"][0]["recall_at_1"] == 1.0
    searcher = IndexSearcher.open(os.path.join(run, "index"))
    scores, ids = searcher.search_ids(x[:50], 600)
    exact = np.sort(x[:50] @ x.T, axis=1)[:, ::-1]
    np.testing.assert_allclose(scores, exact, atol=1e-5)


def test_mixed_models_are_refused(tmp_path_factory):
    run = str(tmp_path_factory.mktemp("mixed"))
    write_shards(run, gaussian_mixture(2000, D, seed=6), 1, model="gemini-embedding-2")
    os.rename(
        os.path.join(run, "embeddings", "part-00000-of-00001.parquet"),
        os.path.join(run, "embeddings", "part-00000-of-00002.parquet"),
    )
    write_shards(run, gaussian_mixture(2000, D, seed=7), 1, model="gemini-embedding-001")
    with pytest.raises(SchemaMismatchError, match="disagree on the vector space"):
        build_index(run, IndexConfig(), PipelineOptions(FNAPI))
    with pytest.raises(SchemaMismatchError, match="gemini-embedding-001"):  # inside a pipeline too
        with beam.Pipeline(options=PipelineOptions(FNAPI)) as p:
            _ = p | BuildIndex(IndexConfig(), run)


def test_searcher_refuses_other_spaces(flat_run):
    searcher = IndexSearcher.open(os.path.join(flat_run[0], "index"))
    searcher.check_space("gemini-embedding-2", D)
    with pytest.raises(VectorSpaceMismatch, match="must not mix"):
        searcher.check_space("gemini-embedding-001", D)
    with pytest.raises(VectorSpaceMismatch):
        searcher.check_space("gemini-embedding-2", 2 * D)
    with pytest.raises(VectorSpaceMismatch, match="dimensions"):
        searcher.search(np.ones((1, 2 * D), np.float32), 5)


def test_unnormalised_vectors_fail_clearly(tmp_path_factory):
    x = gaussian_mixture(3000, D, seed=8)
    x[1234] *= 3.0
    run = str(tmp_path_factory.mktemp("norm"))
    write_shards(run, x, 2)
    with pytest.raises(ValueError, match="not unit-norm"):
        build_index(run, IndexConfig(), PipelineOptions(FNAPI))


def test_multiprocess_workers_on_a_path_collection(tmp_path_factory, corpus):
    """Fresh worker processes: catches pickling/import problems Dataflow would hit."""
    run = str(tmp_path_factory.mktemp("mp"))
    paths = write_shards(run, corpus[:6000], 4)
    options = PipelineOptions(
        FNAPI + ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    )
    with beam.Pipeline(options=options) as p:
        _ = p | beam.Create(paths) | BuildIndex(IndexConfig(nlist=32, faiss_threads=1), run)
    report = json.loads(open(os.path.join(run, "index", "report.json")).read())
    assert report["n"] == 6000 and report["shards"] == 4 and report["threads"]["add"] == 1
