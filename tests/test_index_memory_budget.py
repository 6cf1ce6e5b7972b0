"""The index fits ``index.memory_budget``, measured on the files, not on the estimate.

README "The index": the codec is chosen from the data and a memory budget (Flat, SQfp16,
SQ8, fast-scan PQ as memory gets tight) and ``report.json`` reports ``index_bytes``. Here
``index_bytes`` is checked against the bytes of the index files on disk, and those against
the budget, for budgets that force each codec in turn.
"""
from __future__ import annotations

import os

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from transforms.index import IndexConfig, build_index
from transforms.index.synthetic import gaussian_mixture, write_shards

pytestmark = pytest.mark.slow

N, D = 12_000, 32
KIB = 1024


@pytest.fixture(scope="module")
def corpus():
    return gaussian_mixture(N, D, clusters=60, seed=5)


@pytest.mark.parametrize("budget, codec", [
    ("4M", "Flat"),
    ("600K", "SQ8"),
    ("256K", "PQ8x4fs"),
])
def test_index_bytes_are_the_files_and_fit_the_budget(tmp_path, corpus, budget, codec):
    run = str(tmp_path / "run")
    write_shards(run, corpus, 3)
    report = build_index(run, IndexConfig(memory_budget=budget, seed=1, target_recall_at_10=0.8),
                         PipelineOptions(["--runner=FnApiRunner"]))
    assert report["codec"] == codec and report["n"] == N
    files = [os.path.join(run, "index", f) for f in report["merge"]["files"]]
    assert files and report["index_bytes"] == sum(os.path.getsize(f) for f in files)
    limit = {"K": KIB, "M": KIB**2}[budget[-1]] * int(budget[:-1])
    assert report["memory_budget"]["bytes"] == limit
    assert report["index_bytes"] <= limit, (
        f"{codec} index of {report['index_bytes']} bytes over its {budget} budget "
        f"(estimated {report['memory_budget']['estimated_index_bytes']})")
