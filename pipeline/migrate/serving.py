"""The serving pointer ``<output>/serving.json``: which index ``embedpipe query --output``
serves, the model and dimensionality it is bound to, and how queries are embedded for it.

It is separate from ``current.json`` on purpose: ``current.json`` is "the last successful
run", which the next incremental run diffs against, while serving is a decision a human
(or the cut-over gate) makes. It is written whole and atomically (temp file + rename
locally, a single object write on GCS), so a reader sees the old pointer or the new one.
Without it, ``query`` serves the run ``current.json`` names, as before.
"""
from __future__ import annotations

from pipeline.config import ConfigError
from pipeline.migrate.config import Migration
from pipeline.migrate.state import now
from pipeline.run import RunContext, load_run
from pipeline.run_layout import RunPaths, read_json, write_json
from transforms import fs
from transforms.index.search import bound_space
from transforms.prompts import QueryConvention

SCHEMA = "embedpipe.serving/1"


def serving_uri(output: str) -> str:
    return fs.join(output, "serving.json")


def read_serving(output: str) -> dict | None:
    uri = serving_uri(output)
    return read_json(uri) if fs.exists(uri) else None


def write_serving(output: str, payload: dict) -> None:
    write_json(serving_uri(output), payload)


def pointer(side: str, run: RunPaths, migration: Migration, *, reason: str, forced: bool = False,
            report: str | None = None) -> dict:
    """A pointer to ``run``'s index, with the query convention of the model it is bound to."""
    space = bound_space(run.index)
    convention = QueryConvention.for_model(
        space.model,
        task_type=migration.settings.query_task_type,
        prompt=migration.task_types.query_prompt(migration.settings.query_task_type),
    )
    return {
        "schema": SCHEMA,
        "side": side,
        "output": run.output,
        "run_id": run.run_id,
        "index": run.index,
        "model": space.model,
        "dimensionality": space.dimensionality,
        "query": {"prompt": convention.prompt, "task_type": convention.task_type},
        "reason": reason,
        "forced": forced,
        "report": report,
        "updated_at": now(),
    }


def serving_context(serving: dict, beam_args) -> tuple[RunContext, QueryConvention]:
    """The run a pointer names and its query convention; refuses a pointer whose model is
    not the one its run and index are bound to (a query must never cross spaces)."""
    paths = RunPaths(serving["output"], serving["run_id"])
    settings = load_run(paths)
    space = bound_space(paths.index)
    bound = {(settings.config.model, settings.config.dimensionality), (space.model, space.dimensionality)}
    if bound != {(serving["model"], serving["dimensionality"])}:
        raise ConfigError(
            f"serving.json: names {serving['model']} d={serving['dimensionality']}, but run "
            f"{paths.run_id} embeds with {settings.config.model} d={settings.config.dimensionality} "
            f"and its index is bound to {space.model} d={space.dimensionality}: vector spaces never "
            "mix (fix: `embedpipe migrate rollback` or `cutover` rewrites the pointer)"
        )
    query = serving["query"]
    return RunContext(settings, paths, tuple(beam_args)), QueryConvention(query["prompt"], query["task_type"])
