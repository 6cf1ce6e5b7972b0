"""What each ``embedpipe`` command does, in terms of the run phases in ``pipeline.run``.

Every command validates first (config, flags, output, sources, backend) and imports Beam
and the SDKs only after that, so a mistake costs seconds, not a pipeline start-up.
"""
from __future__ import annotations

import json
import os
import sys

from pipeline.cli import EXIT_OK, EXIT_PENDING, EXIT_USAGE, print_json
from pipeline.config import load_settings
from pipeline import preflight

# What to tell the user if the command is interrupted (Ctrl-C), set once a run is known.
resume_hint: str | None = None


def runner_flag_to_override(args, beam_args: list[str]) -> list[str]:
    """``--runner=X`` (a Beam habit) becomes ``--set runner=X`` so the config validates it;
    returns the remaining Beam args."""
    rest = []
    items = iter(beam_args)
    for arg in items:
        if arg == "--runner":
            args.overrides.append(f"runner={next(items, '')}")
        elif arg.startswith("--runner="):
            args.overrides.append(f"runner={arg.split('=', 1)[1]}")
        else:
            rest.append(arg)
    return rest


def _settings(args):
    if not args.config:
        preflight.warn("no --config given: using the packaged embedded default "
                       "(backend: emulator, nothing is billed)")
    return load_settings(
        args.config, overrides=args.overrides, sources=args.sources, output=args.output
    )


def _checked_settings(args, beam_args, *, backend: bool = True):
    """Settings of a new run, with everything that can be checked before work checked."""
    settings = _settings(args)
    preflight.check_beam_options(settings, beam_args)
    preflight.check_sources(settings, strict=args.strict)
    preflight.check_output(settings.config.output)
    if backend:
        preflight.check_backend(settings)
    return settings


def _acquired_context(args, beam_args):
    """The unfinished run of this config and sources, or a new one (``run``, ``submit``)."""
    global resume_hint
    settings = _checked_settings(args, beam_args)
    from pipeline.run import RunContext, acquire_run

    paths, resumed = acquire_run(settings)
    if resumed:
        print(f"resuming unfinished run {paths.run_id}", file=sys.stderr)
    resume_hint = (f"run {paths.run_id} is resumable: rerun the same command to continue it "
                   "(jobs already created are never paid twice)")
    return RunContext(settings, paths, tuple(beam_args))


def _existing_context(args, beam_args, *, submitted_only: bool = True):
    """A run under --output: the named one, or the newest submitted one (plan-only and
    refused runs are skipped: they are never advanced)."""
    global resume_hint
    preflight.check_existing_output(args.output)
    from pipeline.run import APPROVED, RunContext, approval_of, load_run
    from pipeline.run_layout import resolve_run

    accept = (lambda p: approval_of(p).get("state") == APPROVED) if submitted_only else None
    paths = resolve_run(args.output, args.run_id, accept)
    settings = load_run(paths, getattr(args, "overrides", []))
    preflight.check_beam_options(settings, beam_args)
    resume_hint = (f"rerun `embedpipe {args.command} --output {args.output} --run {paths.run_id}` "
                   "to continue (nothing is paid twice)")
    return RunContext(settings, paths, tuple(beam_args))


def _complete(ctx, plan: dict) -> int:
    from pipeline.run import complete

    return _report(ctx, plan, *complete(ctx, plan))


def _report(ctx, plan: dict, manifest: dict, code: int, messages: list[str]) -> int:
    from pipeline.run import summary_text

    print(summary_text(plan, manifest))
    for message in messages:
        print(f"embedpipe: {message}", file=sys.stderr)
    print(f"run {ctx.paths.run_id}: {ctx.paths.root}", file=sys.stderr)
    return code


def cmd_plan(args, beam_args) -> int:
    settings = _checked_settings(args, beam_args, backend=False)
    from pipeline.run import BudgetExceeded, RunContext, check_budget, mark_plan_only, prepare
    from pipeline.run_layout import RunPaths, new_run_id

    ctx = RunContext(settings, RunPaths(settings.config.output, new_run_id(settings.fingerprint())),
                     tuple(beam_args))
    plan = prepare(ctx)
    mark_plan_only(ctx.paths)
    print_json({k: plan[k] for k in plan if k != "wave_files"})
    try:
        check_budget(settings, plan)
    except BudgetExceeded as exc:
        if args.check:
            raise
        preflight.warn(f"{exc}; `run`/`submit` would refuse this plan (plan --check exits 2)")
    return EXIT_OK


def cmd_run(args, beam_args) -> int:
    ctx = _acquired_context(args, beam_args)
    from pipeline.run import run_to_completion

    return _report(ctx, *run_to_completion(ctx))


def cmd_submit(args, beam_args) -> int:
    ctx = _acquired_context(args, beam_args)
    from pipeline.backend import open_backend
    from pipeline.run import drive_jobs, prepare_approved

    prepare_approved(ctx)
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
    from pipeline.backend import open_backend
    from pipeline.run import drive_jobs, require_approved, status_report

    require_approved(ctx)
    preflight.check_backend(ctx.settings)
    with open_backend(ctx.settings) as client:
        driver = drive_jobs(ctx, client, once=True)
        pending = driver.pending()
        if args.json:
            print_json(status_report(ctx, driver))
        else:  # the original contract: tools parse exactly these three keys
            print_json({"run_id": ctx.paths.run_id, "jobs": driver.summary(), "pending": pending})
    return EXIT_PENDING if pending else EXIT_OK


def cmd_collect(args, beam_args) -> int:
    ctx = _existing_context(args, beam_args)
    from pipeline.backend import open_backend
    from pipeline.run import drive_jobs, require_approved
    from pipeline.run_layout import read_json

    require_approved(ctx)
    preflight.check_backend(ctx.settings)
    with open_backend(ctx.settings) as client:
        pending = drive_jobs(ctx, client, once=True).pending()
    if pending:
        print(f"run {ctx.paths.run_id}: jobs still pending", file=sys.stderr)
        return EXIT_PENDING
    return _complete(ctx, read_json(ctx.paths.plan))


def cmd_redrive(args, beam_args) -> int:
    ctx = _existing_context(args, beam_args)
    from pipeline.backend import open_backend
    from pipeline.redrive import redrive
    from pipeline.run import drive_jobs, require_approved
    from pipeline.run_layout import read_json

    require_approved(ctx)
    preflight.check_backend(ctx.settings)
    resubmitted = redrive(ctx)
    print(f"redrive: {resubmitted} dead-lettered chunk(s) resubmitted", file=sys.stderr)
    if not resubmitted:
        return EXIT_OK
    with open_backend(ctx.settings) as client:
        drive_jobs(ctx, client, once=False)
    return _complete(ctx, read_json(ctx.paths.plan))


def cmd_index(args, beam_args) -> int:
    ctx = _existing_context(args, beam_args)
    from pipeline.run import rebuild_index

    print_json(rebuild_index(ctx))
    return EXIT_OK


def cmd_query(args, beam_args) -> int:
    """Without --run: the index ``serving.json`` names (see ``embedpipe migrate``), else
    the run ``current.json`` names."""
    preflight.check_existing_output(args.output)
    from pipeline.migrate.serving import read_serving, serving_context
    from pipeline.query import NothingToSearch, query_run
    from pipeline.run_layout import RunPaths, read_json
    from transforms import fs

    serving = read_serving(args.output) if args.run_id is None else None
    convention = None
    if serving is not None:
        ctx, convention = serving_context(serving, beam_args)
    else:
        current = RunPaths(args.output, "-").current
        if args.run_id is None and fs.exists(current):
            args.run_id = read_json(current)["run_id"]
        ctx = _existing_context(args, beam_args)
    if args.queries is not None:
        return _query_batch(ctx, args, convention)
    try:
        hits = query_run(ctx, text=args.text, image=args.image, file=args.file, k=args.k,
                         convention=convention)
    except NothingToSearch as exc:
        print(f"embedpipe: {exc}", file=sys.stderr)
        hits = []
    if args.json:
        print(json.dumps(hits, indent=2))
    else:
        for rank, hit in enumerate(hits, 1):
            print(
                f"{rank:2d}. {hit['score']:.4f}  {hit['source_uri']}  "
                f"[{hit['unit']} {hit['start']:g}-{hit['end']:g}]"
            )
    return EXIT_OK


def _query_batch(ctx, args, convention) -> int:
    """``--queries FILE``: one JSON line per query, ``{"line", "query", "hits"}``."""
    import contextlib

    from pipeline.config import ConfigError
    from pipeline.query import NothingToSearch, query_batch

    if any(v is not None for v in (args.text, args.image, args.file)):
        raise ConfigError("query --queries: give TEXT, --image, --file or --queries, not several")
    if args.queries != "-" and not os.path.isfile(args.queries):
        raise ConfigError(f"query --queries: {args.queries!r} is not a file (one query per line)")
    with contextlib.ExitStack() as stack:
        lines = sys.stdin if args.queries == "-" else stack.enter_context(
            open(args.queries, encoding="utf-8"))
        try:
            for result in query_batch(ctx, lines, args.k, convention):
                print(json.dumps(result, ensure_ascii=False))
        except NothingToSearch as exc:
            print(f"embedpipe: {exc}", file=sys.stderr)
    return EXIT_OK


def cmd_migrate(args, beam_args) -> int:
    from pipeline.migrate.commands import dispatch as migrate

    return migrate(args, beam_args)


def cmd_emulator(args, beam_args) -> int:
    from pipeline.emulator import serve_forever

    if beam_args:
        print(f"embedpipe: emulator: unknown option(s) {' '.join(beam_args)}", file=sys.stderr)
        return EXIT_USAGE
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
    if hasattr(args, "overrides"):
        beam_args = runner_flag_to_override(args, beam_args)
    return COMMANDS[args.command](args, beam_args)
