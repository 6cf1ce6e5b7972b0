"""BuildIndex: count → sample → train once → add shards in parallel → merge → recall gate.

A thin Beam wiring of :mod:`transforms.index.stages`: one named step per stage, the
trained template loaded once per worker process, and ``build_index`` to run it as its
own pipeline (the ``embedpipe index`` command).
"""

from __future__ import annotations

import hashlib

import apache_beam as beam
import faiss
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.pvalue import AsSingleton, PBegin
from apache_beam.utils import shared

from transforms import fs
from transforms.index import report as rep
from transforms.index.layout import IndexLayout, delete, local_output, match_paths, read_index
from transforms.index.params import IndexConfig
from transforms.index.plan import IndexPlan, plan_index
from transforms.index.recall import RecallTargetUnreachable
from transforms.index.source import (
    ShardInfo,
    bind_space,
    embeddings_glob,
    inspect_shard,
    number_shards,
)
from transforms.index.stages import (
    Trained,
    add_shard,
    cores,
    draw_sample,
    measure_recall,
    merge_shards,
    publish_report,
    train_template,
)


class _Template:
    """Serialized trained index, shared by every AddShard instance of a process."""

    def __init__(self, uri: str):
        self.blob = faiss.serialize_index(read_index(uri))
        self.sha256 = hashlib.sha256(self.blob.tobytes()).hexdigest()


def _version_tag(uri: str) -> str:
    meta = FileSystems.match([uri])[0].metadata_list[0]
    return f"{uri}@{meta.size_in_bytes}@{meta.last_updated_in_seconds}"


class AddShard(beam.DoFn):
    """Adds one shard per element to a copy of the template loaded once per process."""

    def __init__(self, layout: IndexLayout, threads: int | None, workers_per_host: int | None):
        self.layout = layout
        self.threads = threads
        self.workers_per_host = workers_per_host
        self._shared = shared.Shared()

    def setup(self):
        if self.threads is None:  # no oversubscription: split the cores between workers
            self.threads = (
                1 if self.workers_per_host is None else max(1, cores() // self.workers_per_host)
            )
        uri = self.layout.trained
        self.template = self._shared.acquire(lambda: _Template(uri), tag=_version_tag(uri))

    def process(self, info: ShardInfo, plan: IndexPlan, trained: Trained):
        faiss.omp_set_num_threads(self.threads)  # per calling thread: bundles may run elsewhere
        if self.template.sha256 != trained.sha256:
            raise RuntimeError(f"{trained.path} changed since training: refusing to mix templates")
        yield add_shard(info, plan, trained, self.template.blob, self.layout, self.threads)


def _workers_per_host(options: PipelineOptions) -> int | None:
    """Concurrent add workers on one host; None = one per core (Dataflow SDK processes)."""
    if "dataflow" in (options.view_as(StandardOptions).runner or "").lower():
        return None
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "in_memory":
        return 1
    return direct.direct_num_workers or None


def _after(info: ShardInfo, _trained: Trained) -> ShardInfo:
    return info


class BuildIndex(beam.PTransform):
    """Embeddings Parquet paths (or the run's ``embeddings/`` when applied to the pipeline
    root) → the index under ``<run>/index/`` → one element: the report dict.

    The report says whether the gate was met; ``build_index`` raises
    :class:`RecallTargetUnreachable` when it was not.
    """

    def __init__(self, config: IndexConfig, run_dir: str):
        super().__init__()
        self.config = config
        self.run_dir = run_dir

    def expand(self, pcoll):
        config, layout = self.config, IndexLayout.of_run(self.run_dir)
        if isinstance(pcoll, PBegin):
            pcoll = (
                pcoll
                | "Embeddings glob" >> beam.Create([embeddings_glob(self.run_dir)])
                | "Match embeddings" >> beam.FlatMap(match_paths)
            )
        shards = (
            pcoll
            | "Collect paths" >> beam.combiners.ToList()
            | "Number shards" >> beam.FlatMap(number_shards)
            | "Spread shards" >> beam.Reshuffle()
            | "Count rows" >> beam.Map(inspect_shard)
        )
        plan = AsSingleton(
            shards
            | "Collect counts" >> beam.combiners.ToList()
            | "Plan index" >> beam.Map(plan_index, config)
        )
        trained = AsSingleton(
            shards
            | "Draw sample" >> beam.FlatMap(draw_sample, plan, layout)
            | "Collect sample" >> beam.combiners.ToList()
            | "Train quantizer" >> beam.Map(train_template, plan, layout, config)
        )
        workers = _workers_per_host(pcoll.pipeline.options)
        return (
            shards
            | "Wait for template" >> beam.Map(_after, trained)
            | "Spread adds" >> beam.Reshuffle()
            | "Add shards"
            >> beam.ParDo(AddShard(layout, config.faiss_threads, workers), plan, trained)
            | "Collect shard indexes" >> beam.combiners.ToList()
            | "Merge" >> beam.Map(merge_shards, plan, layout)
            | "Measure recall" >> beam.Map(measure_recall, plan, trained, layout, config)
            | "Write report" >> beam.Map(publish_report, plan, trained, layout, config)
        )


def _clear(layout: IndexLayout) -> None:
    """Drop a previous build's files so the index directory holds exactly one build."""
    patterns = [fs.join(layout.root, "*")] + [
        fs.join(layout.root, d, "*") for d in ("shards", "sample")
    ]
    delete([path for pattern in patterns for path in match_paths(pattern)])


def build_index(
    run_dir: str,
    config: IndexConfig = IndexConfig(),
    options: PipelineOptions | None = None,
    eval_queries: np.ndarray | None = None,
) -> dict:
    """Build ``<run>/index/`` in its own pipeline; returns the report.

    ``eval_queries`` (the user's queries, already embedded by the caller: workers never
    see an API key) are handed to the pipeline as a file and decide the recall gate;
    without them a query-like proxy does.

    Raises SchemaMismatchError (mixed vector spaces) before starting workers and
    RecallTargetUnreachable (after writing the report) when the gate fails.
    """
    layout = IndexLayout.of_run(run_dir)
    bind_space([inspect_shard(s) for s in number_shards(match_paths(embeddings_glob(run_dir)))])
    _clear(layout)
    if eval_queries is not None:
        with local_output(layout.eval_queries) as path, open(path, "wb") as fh:
            np.save(fh, np.ascontiguousarray(eval_queries, np.float32))
    options = options or PipelineOptions(["--runner=FnApiRunner"])
    with beam.Pipeline(options=options) as p:
        _ = p | "BuildIndex" >> BuildIndex(config, run_dir)
    report = rep.read_report(layout)
    if not report["recall"]["target_met"]:
        raise RecallTargetUnreachable(
            f"recall gate failed: {report['reasons']['nprobe']}; see {layout.report}",
            target=config.target_recall_at_10,
            best=max(p["recall_at_10"] for p in report["recall"]["sweep"]),
        )
    return rep.read_report(layout)
