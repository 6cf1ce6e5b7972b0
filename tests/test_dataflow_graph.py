"""Dataflow readiness: the prepare and write graphs build for DataflowRunner offline
(``--dry_run``), which also proves every DoFn pickles."""
from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pytest

from pipeline import graph
from pipeline.config import load_settings
from pipeline.run_layout import RunPaths
from transforms.write_embeddings import ResultSet

REPO = Path(__file__).resolve().parents[1]
DRY_RUN = [
    "--runner=DataflowRunner", "--project=embedpipe-test", "--region=us-central1",
    "--temp_location=gs://embedpipe-test-bucket/tmp", "--no_auth", "--dry_run=True",
]


def _settings():
    return load_settings(
        str(REPO / "configs" / "dataflow.yaml"),
        sources=["gs://embedpipe-test-bucket/corpus/**"],
        output="gs://embedpipe-test-bucket/out",
        overrides=["beam_options=[]"],
    )


def _names(result) -> set[str]:
    return {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}


@pytest.mark.slow
def test_prepare_graph_builds_for_dataflow_offline():
    settings = _settings()
    paths = RunPaths(settings.config.output, "dry-run")
    p = beam.Pipeline(options=graph.pipeline_options(settings, DRY_RUN))
    graph.build_prepare(p, settings, paths)
    result = p.run()
    names = _names(result)
    for stage in ("ListSources", "Chunk", "PlanRequests", "WriteDeadLetters"):
        assert stage in names
    assert result.job.proto.type.name == "JOB_TYPE_BATCH"


@pytest.mark.slow
def test_write_graph_builds_for_dataflow_offline():
    settings = _settings()
    paths = RunPaths(settings.config.output, "dry-run")
    sets = [ResultSet(0, 1, "req-00000-000", "gs://embedpipe-test-bucket/k.parquet", ())]
    p = beam.Pipeline(options=graph.pipeline_options(settings, DRY_RUN))
    graph.build_write(p, settings, paths, sets)
    assert "WriteEmbeddings" in _names(p.run())
