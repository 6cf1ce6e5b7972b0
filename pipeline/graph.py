"""Beam graph assembly. Two pipelines bracket the (possibly day-long) wait for batch jobs,
so no worker is held while the Batch API works:

- ``prepare``: ListSources → DiffAgainstLastRun → Chunk → PlanRequests → request files,
  listing, dead letters, and the previous run's rows of unchanged objects.
- ``write``: downloaded results → WriteEmbeddings (join by key) → Parquet parts.

The index is built by ``transforms.index`` as its own pipeline afterwards.

Every text output is a WriteOnceJsonLines sink (deterministic, create-only objects: no
temp files, no rename, exactly-once under worker retries). A phase that runs again (a
resumed prepare, a collect after a redrive) first clears the shards its previous
execution wrote, so each shard has one writer: the current execution.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import heap, phases, runners
from pipeline.config import Settings
from pipeline.run_layout import RunPaths, write_json
from transforms import fs
from transforms.chunk import ChunkSources
from transforms.diff_last_run import (
    TOMBSTONES,
    UNCHANGED,
    CarryDeadLetters,
    CarryUnchanged,
    DiffAgainstLastRun,
    PreviousRun,
)
from transforms.embeddings_schema import EmbeddingsMeta
from transforms.list_sources import ListSources
from transforms.plan_requests import PlanRequests, RequestSizing
from transforms.types import ObjectOutcome
from transforms.write_embeddings import FAILURES, ResultSet, WriteEmbeddingsDoFn
from transforms.write_once import WriteOnceJsonLines, shard_glob


def pipeline_options(settings: Settings, extra_args: list[str] = ()) -> PipelineOptions:
    """Runner from the config, as the engine that really runs it (see ``pipeline.runners``);
    config ``beam_options`` first, command-line ones win."""
    args = [*settings.config.beam_options, *extra_args]
    return PipelineOptions([*runners.runner_args(settings, args), *args])


# -- the text sinks (prefixes under the run) ---------------------------------------------
def listing(paths: RunPaths) -> str:
    return fs.join(paths.listing, "objects")


def tombstones(paths: RunPaths) -> str:
    return fs.join(paths.listing, "tombstones")


def chunk_deadletters(paths: RunPaths) -> str:
    return fs.join(paths.deadletters, "chunk")


def carried_deadletters(paths: RunPaths) -> str:
    return fs.join(paths.deadletters, "carried")


def collect_deadletters(paths: RunPaths) -> str:
    return fs.join(paths.deadletters, "collect")


def clear_shards(prefixes: list[str]) -> None:
    """Delete what an earlier execution of a phase wrote to these sinks."""
    fs.delete_many([path for prefix in prefixes for path, _ in fs.match(shard_glob(prefix, ".jsonl"))])


def _to_json_line(item) -> str:
    return json.dumps(dataclasses.asdict(item), sort_keys=True)


_OUTCOME_FIELDS = tuple(f.name for f in dataclasses.fields(ObjectOutcome))


def _outcome_row(outcome: ObjectOutcome) -> str:
    """An outcome as the JSON array of its field values: what the listing sink holds until
    it knows its shard count (about half its JSON line, one string per outcome). JSON keeps
    it ASCII, so a file name that is not UTF-8 (lone surrogates, from ``surrogateescape``)
    passes Beam's UTF-8 string coder, as it does inside the line."""
    return json.dumps([getattr(outcome, name) for name in _OUTCOME_FIELDS])


def _outcome_line(row: str) -> str:
    """The listing line of an outcome row: the same text as ``_to_json_line(outcome)``."""
    return json.dumps(dict(zip(_OUTCOME_FIELDS, json.loads(row))), sort_keys=True)


def _write_index(infos, uri: str) -> None:
    write_json(uri, sorted((i.to_json() for i in infos), key=lambda d: d["name"]))


def request_sizing(settings: Settings, paths: RunPaths | None = None) -> RequestSizing:
    c = settings.config
    return RequestSizing(
        model=c.model,
        dimensionality=c.dimensionality,
        max_file_bytes=min(c.requests.max_file_bytes, settings.limits.input_file_bytes),
        max_lines=c.requests.max_lines_per_file,
        max_tokens=c.requests.max_tokens_per_file or c.quota.enqueued_tokens,
        media_dir=paths.media if paths else "",
        files_api_threshold_bytes=c.media.files_api_threshold_bytes,
    )


def build_prepare(
    p: beam.Pipeline, settings: Settings, paths: RunPaths, previous: PreviousRun | None = None
) -> list[beam.PCollection]:
    """Returns the outputs of every write, so a caller can run a step after all of them
    (the Flex Template's "Mark prepared", see dataflow/flex_template.py)."""
    c = settings.config
    exclude = None if fs.is_remote(paths.output) else os.path.abspath(paths.output) + os.sep
    chunk_settings = settings.chunk_settings()
    sources = (
        p
        | "ListSources" >> ListSources(c.sources, exclude_prefix=exclude, roots=chunk_settings.source_roots)
        | "Clock list" >> beam.ParDo(phases.MarkStage("list"))
    )
    outcomes = []
    written = []
    if previous is not None:
        diff = sources | "DiffAgainstLastRun" >> DiffAgainstLastRun(previous)
        sources = diff.changed
        outcomes.append(diff[UNCHANGED])
        written.append(
            diff[UNCHANGED] | "Carry unchanged rows" >> CarryUnchanged(previous, paths.embeddings)
        )
        written.append(
            diff[UNCHANGED]
            | "Carry unchanged dead letters" >> CarryDeadLetters(previous)
            | "Write carried dead letters" >> WriteOnceJsonLines(carried_deadletters(paths))
        )
        written.append(
            diff[TOMBSTONES]
            | "Tombstones to JSON" >> beam.Map(_to_json_line)
            | "Write tombstones" >> WriteOnceJsonLines(tombstones(paths))
        )
    chunked = sources | "Chunk" >> ChunkSources(chunk_settings)
    outcomes.append(chunked.outcomes | "Clock chunk" >> beam.ParDo(phases.MarkStage("chunk")))
    files = (
        chunked.chunks
        | "PlanRequests" >> PlanRequests(paths.requests, request_sizing(settings, paths))
        | "Clock plan" >> beam.ParDo(phases.MarkStage("plan"))
    )
    written.append(
        files
        | "Gather request files" >> beam.combiners.ToList()
        | "Write request index" >> beam.Map(_write_index, paths.request_index)
    )
    written.append(
        chunked.deadletters
        | "Dead letters to JSON" >> beam.Map(_to_json_line)
        | "WriteDeadLetters" >> WriteOnceJsonLines(chunk_deadletters(paths))
    )
    written.append(
        outcomes
        | "All outcomes" >> beam.Flatten()
        | "Outcomes as rows" >> beam.Map(_outcome_row)
        | "Write listing" >> WriteOnceJsonLines(listing(paths), to_line=_outcome_line)
    )
    return written


def run_pipeline(p: beam.Pipeline):
    """Run a built pipeline to the end; its result (for metrics)."""
    result = p.run()
    result.wait_until_finish()
    return result


def run_prepare(
    settings: Settings,
    paths: RunPaths,
    extra_args: list[str] = (),
    previous: PreviousRun | None = None,
) -> dict[str, tuple[float, float]]:
    """Run the prepare pipeline; returns the list/chunk/plan windows (epoch seconds). On a
    local runner its stages run in this process, which gives their freed buffers back
    (``pipeline.heap``)."""
    heap.return_freed_buffers()
    clear_shards([listing(paths), tombstones(paths), chunk_deadletters(paths), carried_deadletters(paths)])
    p = beam.Pipeline(options=pipeline_options(settings, extra_args))
    build_prepare(p, settings, paths, previous)
    started = time.time()
    result = run_pipeline(p)
    return phases.stage_windows(result, started, time.time())


def build_write(
    p: beam.Pipeline,
    settings: Settings,
    paths: RunPaths,
    result_sets: list[ResultSet],
) -> None:
    c = settings.config
    meta = EmbeddingsMeta(
        model=c.model,
        dimensionality=c.dimensionality,
        normalized=True,
        config_fingerprint=settings.fingerprint(),
    )
    created_at = dt.datetime.now(dt.timezone.utc)
    written = (
        p
        | "Result sets" >> beam.Create(result_sets)
        | "Spread result sets" >> beam.Reshuffle()
        | "WriteEmbeddings"
        >> beam.ParDo(WriteEmbeddingsDoFn(paths.embeddings, meta, created_at)).with_outputs(
            FAILURES, main="parts"
        )
    )
    (
        written[FAILURES]
        | "Collect dead letters to JSON" >> beam.Map(_to_json_line)
        | "WriteCollectDeadLetters" >> WriteOnceJsonLines(collect_deadletters(paths))
    )


def run_write(
    settings: Settings,
    paths: RunPaths,
    result_sets: list[ResultSet],
    extra_args: list[str] = (),
) -> None:
    clear_shards([collect_deadletters(paths)])
    p = beam.Pipeline(options=pipeline_options(settings, extra_args))
    build_write(p, settings, paths, result_sets)
    run_pipeline(p)
