"""Dataflow Flex Template entry point: the prepare stage of an embedpipe run.

A Flex Template launcher builds one pipeline and must exit right after ``run()``
(Dataflow's rule: no ``wait_until_finish``), so it cannot run embedpipe's multi-phase
commands, whose later phases read what the pipeline wrote. It launches the longest
Beam stage, prepare (list, chunk, write request files), of the run that
``embedpipe submit`` then continues:

1. the launcher claims the run slot of this config and sources exactly as ``submit``
   does, writes ``run.json`` and launches the prepare pipeline;
2. the pipeline's last step ("Mark prepared") writes ``plan.json`` and marks the run
   prepared once every request file, listing and dead letter has been written;
3. ``embedpipe submit`` with the same config and sources resumes that run, finds it
   prepared, checks the budget and submits the first wave. Only that process holds the
   API key; the launcher and the workers never see it.

Template parameters (``dataflow/metadata.json``) are ``config`` (a config file in the
image) and every config key, named with ``_`` for ``.`` (``gemini_base_url`` sets
``gemini.base_url``). Values are YAML scalars as with ``--set``; a list key also takes a
single string (``sources=gs://bucket/corpus/**``). Any other ``--flag`` is a Beam
pipeline option, as on the command line.

``python dataflow/flex_template.py --write-metadata`` regenerates metadata.json from the
config models.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import typing
from pathlib import Path

import apache_beam as beam
import yaml
from pydantic import BaseModel

from pipeline import graph, preflight
from pipeline.config import RunConfig, load_settings
from pipeline.run import RunContext, acquire_run, begin_prepare, phase_reached, set_phase, write_plan
from pipeline.run_layout import RunPaths

METADATA = Path(__file__).with_name("metadata.json")
CONFIG_PARAMETER = {
    "name": "config",
    "label": "--config",
    "helpText": "Run config (YAML) inside the launcher image, e.g. /app/configs/dataflow.yaml. "
                "The parameters below override its keys.",
    "isOptional": True,
}


def config_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """(dotted key, pydantic field) for every leaf key of the run config."""
    keys = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += config_keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.append((f"{prefix}{name}", field))
    return keys


def parameter_name(key: str) -> str:
    return key.replace(".", "_")


def _is_list(field) -> bool:
    return typing.get_origin(field.annotation) is list


def template_metadata() -> dict:
    parameters = [CONFIG_PARAMETER]
    for key, field in config_keys():
        default = field.get_default(call_default_factory=True)
        what = f"{field.description}. " if field.description else ""
        parameters.append({
            "name": parameter_name(key),
            "label": key,
            "helpText": f"{what}Config key {key} (YAML value; default {json.dumps(default)}).",
            "isOptional": True,
        })
    return {
        "name": "embedpipe prepare",
        "description": "Lists, chunks and writes the Gemini Batch API request files of an "
                       "embedpipe run; `embedpipe submit` with the same config and sources "
                       "continues the run (budget check, batch jobs).",
        "parameters": parameters,
    }


def parse_parameters(argv: list[str]) -> tuple[str | None, list[str], list[str]]:
    """(config file, ``key=value`` overrides, Beam options) from the launcher's arguments."""
    parser = argparse.ArgumentParser(prog="flex_template", allow_abbrev=False)
    parser.add_argument("--config")
    fields = dict(config_keys())
    for key in fields:
        parser.add_argument(f"--{parameter_name(key)}", dest=key)
    known, beam_args = parser.parse_known_args(argv)
    overrides = []
    for key, field in fields.items():
        raw = getattr(known, key)
        if raw is None:
            continue
        if _is_list(field) and isinstance(yaml.safe_load(raw), str):
            raw = json.dumps([raw])
        overrides.append(f"{key}={raw}")
    return known.config, overrides, beam_args


def mark_prepared(_, settings, paths: RunPaths, *written) -> None:
    """Runs after every write of the prepare pipeline (``written`` are side inputs)."""
    write_plan(RunContext(settings, paths))
    set_phase(paths, "prepared")


def launch(argv: list[str]) -> RunPaths:
    """Claim the run and launch its prepare pipeline; returns without waiting for it."""
    config, overrides, beam_args = parse_parameters(argv)
    settings = load_settings(config, overrides=overrides)
    preflight.check_beam_options(settings, beam_args)
    preflight.check_sources(settings, strict=False)
    preflight.check_output(settings.config.output)
    paths, _resumed = acquire_run(settings)
    if phase_reached(paths, "prepared"):
        logging.warning("run %s is already prepared: nothing to launch", paths.run_id)
        return paths
    previous = begin_prepare(RunContext(settings, paths))
    p = beam.Pipeline(options=graph.pipeline_options(settings, beam_args))
    written = graph.build_prepare(p, settings, paths, previous)
    _ = (
        p
        | "Prepare finished" >> beam.Create([None])
        | "Mark prepared" >> beam.Map(
            mark_prepared, settings, paths, *(beam.pvalue.AsList(w) for w in written)
        )
    )
    p.run()  # no wait_until_finish: a Flex Template launcher must exit after run()
    logging.warning("run %s: prepare launched; continue with `embedpipe submit` "
                    "(same config and sources)", paths.run_id)
    return paths


def main(argv: list[str]) -> int:
    if argv == ["--write-metadata"]:
        METADATA.write_text(json.dumps(template_metadata(), indent=2) + "\n")
        return 0
    print(launch(argv).run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
