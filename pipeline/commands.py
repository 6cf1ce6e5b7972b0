"""What each ``embedpipe`` command does, in terms of the run phases in ``pipeline.run``."""
from __future__ import annotations

import json
import sys

from pipeline.backend import open_backend
from pipeline.cli import EXIT_OK, EXIT_PENDING, print_json
from pipeline.config import load_settings
from pipeline.run import (
    BudgetExceeded,
    RunContext,
    acquire_run,
    build_index,
    check_budget,
    drive_jobs,
    finish,
    load_run,
    prepare,
    release_slot,
    summary_text,
    write_embeddings,
)
from pipeline.run_layout import RunPaths, new_run_id, read_json, resolve_run
from transforms import fs


def _settings(args):
    return load_settings(
        args.config, overrides=args.overrides, sources=args.sources, output=args.output
    )


def _new_context(args, beam_args) -> RunContext:
    """A fresh run (``plan``: a dry run holds no slot)."""
    settings = _settings(args)
    paths = RunPaths(settings.config.output, new_run_id(settings.fingerprint()))
    return RunContext(settings, paths, tuple(beam_args))


def _acquired_context(args, beam_args) -> RunContext:
    """The unfinished run of this config and sources, or a new one (``run``, ``submit``)."""
    settings = _settings(args)
    paths, resumed = acquire_run(settings)
    if resumed:
        print(f"resuming unfinished run {paths.run_id}", file=sys.stderr)
    return RunContext(settings, paths, tuple(beam_args))


def _existing_context(args, beam_args) -> RunContext:
    paths = resolve_run(args.output, args.run_id)
    return RunContext(load_run(paths), paths, tuple(beam_args))


def _complete(ctx: RunContext, plan: dict) -> int:
    write_embeddings(ctx)
    report = build_index(ctx)
    manifest, code = finish(ctx, plan, report)
    print(summary_text(plan, manifest))
    print(f"run {ctx.paths.run_id}: {ctx.paths.root}", file=sys.stderr)
    return code


def cmd_plan(args, beam_args) -> int:
    ctx = _new_context(args, beam_args)
    plan = prepare(ctx)
    print_json({k: plan[k] for k in plan if k != "wave_files"})
    return EXIT_OK


def _prepare_within_budget(ctx: RunContext) -> dict:
    """Prepare (or reuse) the run's plan; over budget, give the run slot back so the next
    attempt re-lists the corpus instead of resuming a run that submitted nothing."""
    plan = prepare(ctx)
    try:
        check_budget(ctx.settings, plan)
    except BudgetExceeded:
        release_slot(ctx.settings)
        raise
    return plan


def cmd_run(args, beam_args) -> int:
    ctx = _acquired_context(args, beam_args)
    plan = _prepare_within_budget(ctx)
    with open_backend(ctx.settings) as client:
        drive_jobs(ctx, client, once=False)
    return _complete(ctx, plan)


def cmd_submit(args, beam_args) -> int:
    ctx = _acquired_context(args, beam_args)
    _prepare_within_budget(ctx)
    with open_backend(ctx.settings) as client:
        drive_jobs(ctx, client, once=True)
    print(ctx.paths.run_id)
    return EXIT_OK


def cmd_status(args, beam_args) -> int:
    """Exit 0 once every request file's job has ended and its results are in, else 75.

    Each call makes the same one driver pass ``collect`` makes before writing (poll,
    re-claim FAILED/EXPIRED, download ended jobs, submit the next wave or follow-ups
    that fit the quota; all ledger-guarded). A sensor polling ``status`` alone therefore
    carries a multi-wave run to its end, and ``collect`` afterwards just writes. (Polling
    only would leave SUCCEEDED jobs uncollected and later waves unsubmitted: 75 forever.)
    """
    ctx = _existing_context(args, beam_args)
    with open_backend(ctx.settings) as client:
        driver = drive_jobs(ctx, client, once=True)
        summary = driver.summary()
        pending = driver.pending()
    print_json({"run_id": ctx.paths.run_id, "jobs": summary, "pending": pending})
    return EXIT_PENDING if pending else EXIT_OK


def cmd_collect(args, beam_args) -> int:
    ctx = _existing_context(args, beam_args)
    with open_backend(ctx.settings) as client:
        pending = drive_jobs(ctx, client, once=True).pending()
    if pending:
        print(f"run {ctx.paths.run_id}: jobs still pending", file=sys.stderr)
        return EXIT_PENDING
    return _complete(ctx, read_json(ctx.paths.plan))


def cmd_redrive(args, beam_args) -> int:
    from pipeline.redrive import redrive

    ctx = _existing_context(args, beam_args)
    resubmitted = redrive(ctx)
    print(f"redrive: {resubmitted} dead-lettered chunk(s) resubmitted", file=sys.stderr)
    if not resubmitted:
        return EXIT_OK
    with open_backend(ctx.settings) as client:
        drive_jobs(ctx, client, once=False)
    return _complete(ctx, read_json(ctx.paths.plan))


def cmd_index(args, beam_args) -> int:
    ctx = _existing_context(args, beam_args)
    report = build_index(ctx)
    print_json(report)
    return EXIT_OK


def cmd_query(args, beam_args) -> int:
    """Without --run: the index ``serving.json`` names (see ``embedpipe migrate``), else
    the run ``current.json`` names."""
    from pipeline.migrate.serving import read_serving, serving_context
    from pipeline.query import query_run

    serving = read_serving(args.output) if args.run_id is None else None
    convention = None
    if serving is not None:
        ctx, convention = serving_context(serving, beam_args)
    else:
        current = RunPaths(args.output, "-").current
        if args.run_id is None and fs.exists(current):
            args.run_id = read_json(current)["run_id"]
        ctx = _existing_context(args, beam_args)
    hits = query_run(ctx, text=args.text, image=args.image, file=args.file, k=args.k,
                     convention=convention)
    if args.json:
        print(json.dumps(hits, indent=2))
    else:
        for rank, hit in enumerate(hits, 1):
            print(
                f"{rank:2d}. {hit['score']:.4f}  {hit['source_uri']}  "
                f"[{hit['unit']} {hit['start']:g}-{hit['end']:g}]"
            )
    return EXIT_OK


def cmd_migrate(args, beam_args) -> int:
    from pipeline.migrate.commands import dispatch as migrate

    return migrate(args, beam_args)


def cmd_emulator(args, beam_args) -> int:
    from pipeline.emulator import serve_forever

    serve_forever(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        state_dir=args.state_dir,
        pending_seconds=args.pending_seconds,
        running_seconds=args.running_seconds,
    )
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "plan": cmd_plan,
    "submit": cmd_submit,
    "status": cmd_status,
    "collect": cmd_collect,
    "index": cmd_index,
    "redrive": cmd_redrive,
    "query": cmd_query,
    "migrate": cmd_migrate,
    "emulator": cmd_emulator,
}


def dispatch(args, beam_args) -> int:
    return COMMANDS[args.command](args, beam_args)
