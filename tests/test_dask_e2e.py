"""embedpipe on a real distributed engine: ``embedpipe run --set runner=DaskRunner`` on a
two-process ``dask.distributed`` cluster gives the same request files, rows, vectors and
index report as FnApiRunner, first and incrementally, with both worker processes doing
work (counted from the scheduler's task stream). Without ``--dask_client_address``,
embedpipe starts a local cluster of ``dask.workers`` processes itself.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import media_factory as mf
from dask_cluster import dask_cluster  # noqa: F401 (session fixture)
from run_helpers import (
    LOCAL,
    all_embeddings,
    cli_env,
    embedpipe,
    only_run,
    read_json,
    run_dirs,
    start,
    vectors,
    write_sample_corpus,
)

pytestmark = pytest.mark.slow

# Per-run facts of the index report (timings, memory and thread counts vary run to run).
REPORT_KEYS = ("n", "d", "index_type", "factory", "nlist", "codec", "chosen_nprobe", "recall",
               "shards", "space", "train_sample_size", "holdout_queries", "index_bytes", "serving")



@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    corpus = write_sample_corpus(tmp_path_factory.mktemp("dask"))
    mf.text_pdf(corpus / "manual.pdf", pages=8)
    mf.save_image(corpus / "logo.png", mf.translucent(), "PNG")
    return corpus


def _run(corpus, out, *extra):
    return start("run", "--config", LOCAL, "--sources", str(corpus), "--output", str(out),
                 "--set", "requests.max_lines_per_file=12", *extra, env=cli_env())


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory, dask_cluster):  # noqa: F811
    """First runs and incremental reruns, on FnApiRunner and on Dask side by side; the
    cluster's tasks per worker during the Dask runs."""
    root = tmp_path_factory.mktemp("outputs")
    fn_out, dask_out = root / "fnapi", root / "dask"
    dask_args = ("--set", "runner=DaskRunner", *dask_cluster.args)
    results = {}
    with dask_cluster.task_stream() as tasks:
        for phase in ("first", "rerun"):
            if phase == "rerun":
                (corpus / "glaciers.txt").write_text((corpus / "glaciers.txt").read_text() + "\nRevised: moraines.\n")
                (corpus / "origami.txt").unlink()
                (corpus / "added.txt").write_text("An added note about tide pools and sea anemones.\n")
            fn, dask = _run(corpus, fn_out), _run(corpus, dask_out, *dask_args)
            results[phase] = (fn.wait(), dask.wait())
            for res in results[phase]:
                assert res.returncode == 0, res.explain()
    return results, run_dirs(fn_out), run_dirs(dask_out), dask_cluster.tasks_per_worker(tasks)


def _request_files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "requests").glob("*.jsonl"))}


def _keys(run_dir: Path) -> dict[str, list]:
    return {p.name: pq.read_table(p).to_pylist() for p in sorted((run_dir / "requests").glob("*.keys.parquet"))}


def _rows(run_dir: Path) -> dict[str, dict]:
    table = all_embeddings(run_dir).drop_columns(["embedding", "created_at", "batch_job"])
    return {row["chunk_id"]: row for row in table.to_pylist()}


def _report(run_dir: Path) -> dict:
    """The index report's facts (not its timings: qps, seconds, memory)."""
    report = read_json(run_dir / "index" / "report.json")
    recall = report["recall"]
    for point in recall["sweep"] + recall["corpus_leave_one_out"]["sweep"]:
        point.pop("qps")
    return {k: report.get(k) for k in REPORT_KEYS}


def assert_same_outputs(fn_dir: Path, dask_dir: Path) -> None:
    assert _request_files(dask_dir) == _request_files(fn_dir)  # byte-identical request files
    assert _keys(dask_dir) == _keys(fn_dir)
    for sink in ("listing", "deadletters"):
        assert {p.name: p.read_bytes() for p in (dask_dir / sink).glob("*.jsonl")} == \
            {p.name: p.read_bytes() for p in (fn_dir / sink).glob("*.jsonl")}, sink
    assert _rows(dask_dir) == _rows(fn_dir)
    fn_vectors, dask_vectors = vectors(all_embeddings(fn_dir)), vectors(all_embeddings(dask_dir))
    assert dask_vectors.keys() == fn_vectors.keys()
    for chunk_id, vector in fn_vectors.items():
        np.testing.assert_allclose(dask_vectors[chunk_id], vector, rtol=0, atol=1e-6)
    assert _report(dask_dir) == _report(fn_dir)
    fn_manifest, dask_manifest = read_json(fn_dir / "manifest.json"), read_json(dask_dir / "manifest.json")
    assert dask_manifest["counts"] == fn_manifest["counts"]
    assert dask_manifest["tokens"] == fn_manifest["tokens"]
    assert {e["engine"] for e in dask_manifest["engines"].values()} == {"DaskRunner"}


def test_dask_run_equals_fnapi_run(runs):
    _results, (fn_first, _), (dask_first, _), _tasks = runs
    assert read_json(dask_first / "plan.json")["request_files"] > 1
    assert_same_outputs(fn_first, dask_first)


def test_dask_incremental_rerun_equals_fnapi_rerun(runs):
    _results, (_, fn_second), (dask_first, dask_second), _tasks = runs
    manifest = read_json(dask_second / "manifest.json")
    assert manifest["previous_run"] == dask_first.name
    c = manifest["counts"]
    assert (c["unchanged"], c["chunked_objects"], c["tombstoned"]) == (39, 2, 1)
    assert_same_outputs(fn_second, dask_second)


def test_both_dask_worker_processes_did_work(runs, dask_cluster):  # noqa: F811
    *_, tasks = runs
    assert set(tasks) == set(dask_cluster.client.scheduler_info()["workers"])
    assert len(tasks) == 2 and min(tasks.values()) > 0, tasks
    # the manifest reports the same thing, per pipeline
    _results, _fn, (dask_first, _), _ = runs
    for phase, engine in read_json(dask_first / "manifest.json")["engines"].items():
        assert len(engine["tasks_by_worker"]) == 2 and min(engine["tasks_by_worker"].values()) > 0, phase


def test_without_an_address_a_local_cluster_of_dask_workers_processes_runs(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    rng = random.Random(3)
    for i in range(6):
        (corpus / f"doc-{i}.txt").write_text(" ".join(rng.choice(["reed", "heron", "marsh", "tide"]) for _ in range(60)))
    res = embedpipe("run", "--config", LOCAL, "--sources", str(corpus), "--output", str(tmp_path / "out"),
                    "--set", "runner=DaskRunner", "--set", "dask.workers=2", "--set", "index.enabled=false",
                    env=cli_env())
    assert res.returncode == 0, res.explain()
    assert "started a local Dask cluster of 2 worker processes" in res.stderr
    engines = read_json(only_run(tmp_path / "out") / "manifest.json")["engines"]
    assert engines["prepare"]["cluster"] == "local, 2 worker processes"
    assert len(engines["prepare"]["tasks_by_worker"]) == 2
    shutil.rmtree(tmp_path / "out")
