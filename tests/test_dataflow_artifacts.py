"""Dataflow launch artifacts (dataflow/): the worker and launcher images, the Flex
Template spec and its launcher program. No Docker engine runs here, so: the images'
pins agree with what is installed, every template parameter is a config key (derived from
the pydantic models) and round-trips into the config, both pipelines stage a template on
a GCS emulator for DataflowRunner offline, and the launcher prepares a run that
``embedpipe submit`` continues without preparing it again."""
from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from gcs_emulator import gcs_bucket, gcs_emulator  # noqa: F401 (pytest fixtures)
from pydantic import BaseModel
from run_helpers import LOCAL, cli_env, embedpipe, wait_then_collect

from pipeline import graph
from pipeline.config import RunConfig, load_settings
from pipeline.run_layout import RunPaths, read_json
from transforms.write_embeddings import ResultSet

REPO = Path(__file__).resolve().parents[1]
DATAFLOW = REPO / "dataflow"
WORKER_IMAGE = "us-central1-docker.pkg.dev/embedpipe-test/beam/embedpipe-worker:test"
flex = runpy.run_path(str(DATAFLOW / "flex_template.py"), run_name="flex_template")


def dockerfile_from(path: Path) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", path.read_text(), flags=re.M)


def test_worker_image_is_the_sdk_image_of_the_installed_beam_and_python():
    (base,) = dockerfile_from(DATAFLOW / "Dockerfile")
    match = re.fullmatch(r"apache/beam_python(\d+\.\d+)_sdk:(\S+)", base)
    assert match, base
    assert match.group(1) == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert match.group(2) == beam.__version__
    pin = re.search(r'"apache-beam\[gcp\]==([\d.]+)\.\*"', (REPO / "setup.py").read_text())
    assert pin and beam.__version__.startswith(pin.group(1) + "."), "setup.py pins another Beam"
    text = (DATAFLOW / "Dockerfile").read_text()
    assert "apt-get install -y --no-install-recommends ffmpeg" in text
    assert "pip install --no-cache-dir ." in text
    for source in re.findall(r"^COPY\s+(.+?)\s+\S+$", text, flags=re.M):
        for item in source.split():
            assert (REPO / item).exists(), f"Dockerfile copies {item}, which is not in the repository"


def test_launcher_image_runs_the_flex_template_program_on_the_worker_image():
    text = (DATAFLOW / "launcher.Dockerfile").read_text()
    assert dockerfile_from(DATAFLOW / "launcher.Dockerfile")[-1] == "${WORKER_IMAGE}"
    program = re.search(r"^ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/app/(\S+)$", text, flags=re.M)
    assert program and (REPO / program.group(1)).is_file()
    assert "COPY dataflow dataflow" in (DATAFLOW / "Dockerfile").read_text()  # and it is in the image


def leaf_keys(model: type[BaseModel], prefix: str = "") -> dict[str, object]:
    """Every leaf config key with its default, straight from the pydantic models."""
    keys = {}
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys.update(leaf_keys(field.annotation, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = field.get_default(call_default_factory=True)
    return keys


def test_template_parameters_are_exactly_the_config_keys():
    metadata = json.loads((DATAFLOW / "metadata.json").read_text())
    assert metadata == flex["template_metadata"](), (
        "dataflow/metadata.json is stale: run `python dataflow/flex_template.py --write-metadata`")
    names = [p["name"] for p in metadata["parameters"]]
    keys = leaf_keys(RunConfig)
    assert len(names) == len(set(names))
    assert set(names) == {"config"} | {k.replace(".", "_") for k in keys}
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    labels = {p["name"]: p["label"] for p in metadata["parameters"]}
    assert all(labels[k.replace(".", "_")] == k for k in keys)


def test_every_template_parameter_sets_its_config_key():
    """Every key set through its parameter (defaults as JSON, a few changed) overrides
    every value of configs/dataflow.yaml: the mapping covers each key, no more, no less."""
    keys = leaf_keys(RunConfig)
    given = {k: json.dumps(v) for k, v in keys.items()}
    given.update({"output": "gs://bucket/out", "sources": "gs://bucket/corpus/**",
                  "gemini.base_url": "http://127.0.0.1:8765", "text.target_chars": "1500",
                  "max_cost_usd": "12.5", "beam_options": '["--project=p"]'})
    expected = dict(keys, **{"output": "gs://bucket/out", "sources": ["gs://bucket/corpus/**"],
                             "gemini.base_url": "http://127.0.0.1:8765", "text.target_chars": 1500,
                             "max_cost_usd": 12.5, "beam_options": ["--project=p"]})
    argv = [f"--{k.replace('.', '_')}={v}" for k, v in given.items()] + ["--region=us-central1"]
    config, overrides, beam_args = flex["parse_parameters"](argv)
    assert config is None and beam_args == ["--region=us-central1"]
    settings = load_settings(str(REPO / "configs" / "dataflow.yaml"), overrides=overrides)
    assert leaf_values(settings.config) == expected


def leaf_values(model: BaseModel, prefix: str = "") -> dict[str, object]:
    values = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            values.update(leaf_values(value, f"{prefix}{name}."))
        else:
            values[f"{prefix}{name}"] = value
    return values


DATAFLOW_OPTIONS = ["--runner=DataflowRunner", "--project=embedpipe-test", "--region=us-central1",
                    "--no_auth", f"--sdk_container_image={WORKER_IMAGE}", "--sdk_location=container"]


def staged_pipeline(client, bucket: str, template: str):
    """The template's job description and the portable pipeline proto it points at."""
    from apache_beam.portability.api import beam_runner_api_pb2

    job = json.loads(client.bucket(bucket).blob(template).download_as_bytes())
    url = job["environment"]["sdkPipelineOptions"]["options"]["pipelineUrl"]
    proto = beam_runner_api_pb2.Pipeline()
    proto.ParseFromString(client.bucket(bucket).blob(url.split(f"gs://{bucket}/", 1)[1]).download_as_bytes())
    names = {t.unique_name for t in proto.components.transforms.values()}
    images = {e.payload.decode(errors="replace") for e in proto.components.environments.values()}
    return job, names, images


def staging_options(bucket: str, name: str) -> list[str]:
    return [*DATAFLOW_OPTIONS, f"--temp_location=gs://{bucket}/tmp",
            f"--staging_location=gs://{bucket}/staging",
            f"--template_location=gs://{bucket}/templates/{name}.json"]


@pytest.mark.slow
def test_flex_launcher_stages_the_prepare_pipeline_for_dataflow(gcs_emulator, gcs_bucket):
    argv = ["--config", str(REPO / "configs" / "dataflow.yaml"), "--beam_options=[]",
            f"--sources=gs://{gcs_bucket}/corpus/**", f"--output=gs://{gcs_bucket}/out",
            *staging_options(gcs_bucket, "prepare")]
    paths = flex["launch"](argv)
    client = gcs_emulator.client()
    job, names, images = staged_pipeline(client, gcs_bucket, "templates/prepare.json")
    assert job["type"] == "JOB_TYPE_BATCH"
    for step in ("ListSources", "Chunk", "PlanRequests", "Write listing", "Mark prepared"):
        assert step in names, step
    assert any(WORKER_IMAGE in image for image in images), images
    # The launcher claimed the run (as `submit` does) and left it for the pipeline to prepare.
    state = read_json(paths.run_state)
    assert state["phase"] == "started" and state["run_id"] == paths.run_id
    assert paths.output == f"gs://{gcs_bucket}/out"


@pytest.mark.slow
def test_write_pipeline_stages_a_template_for_dataflow(gcs_emulator, gcs_bucket):
    settings = load_settings(str(REPO / "configs" / "dataflow.yaml"), overrides=["beam_options=[]"],
                             output=f"gs://{gcs_bucket}/out", sources=[f"gs://{gcs_bucket}/corpus/**"])
    paths = RunPaths(settings.config.output, "staged")
    sets = [ResultSet(0, 1, "req-00000-000", f"gs://{gcs_bucket}/k.parquet", ())]
    p = beam.Pipeline(options=graph.pipeline_options(settings, staging_options(gcs_bucket, "write")))
    graph.build_write(p, settings, paths, sets)
    p.run()
    job, names, images = staged_pipeline(gcs_emulator.client(), gcs_bucket, "templates/write.json")
    assert job["type"] == "JOB_TYPE_BATCH"
    assert {"WriteEmbeddings", "WriteCollectDeadLetters"} <= names
    assert any(WORKER_IMAGE in image for image in images), images


@pytest.mark.slow
def test_flex_launcher_prepares_a_run_that_submit_continues(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, topic in enumerate(("glaciers carve fjords", "rivers build deltas", "dunes migrate")):
        (corpus / f"doc{i}.txt").write_text(f"{topic}. " * 60)
    output = tmp_path / "out"
    launched = subprocess.run(
        [sys.executable, str(DATAFLOW / "flex_template.py"), "--config", LOCAL,
         f"--sources={corpus}", f"--output={output}", "--index_enabled=false"],
        env=cli_env(), cwd=REPO, text=True, capture_output=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    run_id = launched.stdout.split()[-1]
    run_dir = output / "runs" / run_id
    state = read_json(str(run_dir / "run.json"))
    assert state["phase"] == "prepared", state  # marked by the pipeline's last step
    plan = read_json(str(run_dir / "plan.json"))
    assert plan["request_files"] >= 1 and plan["objects"]["listed"] == 3
    listing = {p: p.stat().st_mtime_ns for p in (run_dir / "listing").iterdir()}

    submitted = embedpipe("submit", "--config", LOCAL, "--sources", str(corpus), "--output", str(output),
                          "--set", "index.enabled=false", env=cli_env())
    assert submitted.returncode == 0, submitted.explain()
    assert submitted.stdout.split()[-1] == run_id and f"resuming unfinished run {run_id}" in submitted.stderr
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "listing").iterdir()} == listing  # not re-prepared
    assert read_json(str(run_dir / "run.json"))["prepared_at"] == state["prepared_at"]
    _, collected = wait_then_collect(output, cli_env())
    assert collected.returncode == 0, collected.explain()
    counts = read_json(str(run_dir / "manifest.json"))["counts"]
    assert counts["listed"] == 3 and counts["embedded_rows"] == counts["chunks"] == plan["objects"]["chunks"]
