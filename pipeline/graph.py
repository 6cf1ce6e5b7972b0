"""Beam graph assembly. Two pipelines bracket the (possibly day-long) wait for batch jobs,
so no worker is held while the Batch API works:

- ``prepare``: ListSources → DiffAgainstLastRun → Chunk → PlanRequests → request files,
  listing, dead letters, and the previous run's rows of unchanged objects.
- ``write``: downloaded results → WriteEmbeddings (join by key) → Parquet parts.

The index is built by ``transforms.index`` as its own pipeline afterwards.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

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
from transforms.write_embeddings import FAILURES, ResultSet, WriteEmbeddingsDoFn


def pipeline_options(settings: Settings, extra_args: list[str] = ()) -> PipelineOptions:
    """Runner pinned by config; config ``beam_options`` first, command-line ones win."""
    args = [f"--runner={settings.config.runner}", *settings.config.beam_options, *extra_args]
    return PipelineOptions(args)


def _to_json_line(item) -> str:
    return json.dumps(dataclasses.asdict(item), sort_keys=True)


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
    sources = p | "ListSources" >> ListSources(
        c.sources, exclude_prefix=exclude, roots=chunk_settings.source_roots
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
            | "Write carried dead letters"
            >> beam.io.WriteToText(fs.join(paths.deadletters, "carried"), file_name_suffix=".jsonl")
        )
        written.append(
            diff[TOMBSTONES]
            | "Tombstones to JSON" >> beam.Map(_to_json_line)
            | "Write tombstones"
            >> beam.io.WriteToText(fs.join(paths.listing, "tombstones"), file_name_suffix=".jsonl")
        )
    chunked = sources | "Chunk" >> ChunkSources(chunk_settings)
    outcomes.append(chunked.outcomes)
    files = chunked.chunks | "PlanRequests" >> PlanRequests(
        paths.requests, request_sizing(settings, paths)
    )
    written.append(
        files
        | "Gather request files" >> beam.combiners.ToList()
        | "Write request index" >> beam.Map(_write_index, paths.request_index)
    )
    written.append(
        chunked.deadletters
        | "Dead letters to JSON" >> beam.Map(_to_json_line)
        | "WriteDeadLetters"
        >> beam.io.WriteToText(fs.join(paths.deadletters, "chunk"), file_name_suffix=".jsonl")
    )
    written.append(
        outcomes
        | "All outcomes" >> beam.Flatten()
        | "Outcomes to JSON" >> beam.Map(_to_json_line)
        | "Write listing"
        >> beam.io.WriteToText(fs.join(paths.listing, "objects"), file_name_suffix=".jsonl")
    )
    return written


def run_prepare(
    settings: Settings,
    paths: RunPaths,
    extra_args: list[str] = (),
    previous: PreviousRun | None = None,
) -> None:
    with beam.Pipeline(options=pipeline_options(settings, extra_args)) as p:
        build_prepare(p, settings, paths, previous)


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
        | "WriteCollectDeadLetters"
        >> beam.io.WriteToText(fs.join(paths.deadletters, "collect"), file_name_suffix=".jsonl")
    )


def run_write(
    settings: Settings,
    paths: RunPaths,
    result_sets: list[ResultSet],
    extra_args: list[str] = (),
) -> None:
    with beam.Pipeline(options=pipeline_options(settings, extra_args)) as p:
        build_write(p, settings, paths, result_sets)
