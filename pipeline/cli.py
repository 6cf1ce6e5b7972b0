"""``embedpipe`` command line. Exit codes: 0 success; 2 usage or config error (also a
refused budget, a plan-only run, an unreachable backend or a rejected key); 3 the run
completed but dead letters exceeded the tolerance; 75 jobs still pending (status,
collect); 1 any other failure. Other ``--flags`` must be Beam pipeline options (checked
against Beam's own list).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_DEADLETTERS, EXIT_PENDING = 0, 1, 2, 3, 75


def _set_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=help_text)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML run config (default: the packaged embedded default)")
    p.add_argument("--sources", nargs="+", metavar="URI", help="override sources")
    p.add_argument("--output", help="override output (local path or gs://)")
    p.add_argument("--strict", action="store_true",
                   help="refuse sources (globs, folders, prefixes) that match no objects")
    _set_arg(p, "override any config key by its dotted name")


def _existing_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="the run output (local path or gs://)")
    p.add_argument("--run", dest="run_id",
                   help="run id (default: the newest submitted run; plan-only runs are skipped)")
    _set_arg(p, "override a key that does not change the run's inputs or vectors "
                "(index.*, gemini.*, quota.*, deadletter_tolerance, max_cost_usd, runner, ...)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _migrate_args(m: argparse.ArgumentParser) -> None:
    steps = m.add_subparsers(dest="migrate_command", required=True)
    imp = steps.add_parser("import", help="validate a legacy 001 store and build the legacy index")
    imp.add_argument("--config", required=True, help="migration config (e.g. configs/migration.yaml)")
    imp.add_argument("--legacy", required=True, metavar="PATH",
                     help="Parquet/JSONL/Avro file, directory or glob, or an embedpipe 001 run")
    imp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    for name, help_text in (
        ("plan", "tokens, cost and waves of the full re-embedding and of a subset; spends nothing"),
        ("run", "re-embed a stratified subset (--fraction) or everything with the new model"),
    ):
        step = steps.add_parser(name, help=help_text)
        step.add_argument("--fraction", type=float, help="share of the corpus (default: all; plan: "
                          "migration.subset_fraction)")
    ev = steps.add_parser("evaluate", help="A/B report of both indexes on your queries")
    ev.add_argument("--queries", required=True, help='JSONL {"query": ..., "relevant_ids": [...]}')
    ev.add_argument("-k", type=int, help="results per query (default migration.evaluation.k)")
    cut = steps.add_parser("cutover", help="serve the new index if the gate passes")
    cut.add_argument("--force", action="store_true", help="cut over even if the gate fails (recorded)")
    steps.add_parser("rollback", help="serve the legacy index again")
    for step in steps.choices.values():
        step.add_argument("--output", required=True, help="the migration output (local path or gs://)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                        help="stderr as text (default) or one JSON object per line "
                             "(also: EMBEDPIPE_LOG_FORMAT=json)")
    parser = argparse.ArgumentParser(prog="embedpipe", description=__doc__, parents=[common])
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("run", "list, chunk, submit, wait, collect, write embeddings and build the index"),
        ("plan", "write plan.json and print the estimate; submits nothing"),
        ("submit", "list, chunk, write request files, submit the first wave; exits"),
    ):
        p = sub.add_parser(name, help=help_text, parents=[common])
        _run_args(p)
        if name == "plan":
            p.add_argument("--check", action="store_true",
                           help="exit 2 when the estimate exceeds max_cost_usd")
    for name, help_text in (
        ("status", "advance the run one idempotent pass; exit 0 when all results are in, 75 while pending"),
        ("collect", "collect ended jobs, submit next waves, write embeddings and index"),
        ("index", "(re)build the index of a run"),
        ("redrive", "resubmit the run's dead-lettered chunks that may succeed now"),
    ):
        p = sub.add_parser(name, help=help_text, parents=[common])
        _existing_run_args(p)
        if name == "status":
            p.add_argument("--json", action="store_true",
                           help="a richer object for sensors and dashboards: states, approval, "
                                "tokens planned/billed so far, phase timings (see README)")
    q = sub.add_parser("query", help="search a run's index", parents=[common])
    _existing_run_args(q)
    q.add_argument("text", nargs="?", help="query text")
    q.add_argument("--image", help="query by an image file")
    q.add_argument("--file", help="query by a file (PDF, audio, video, text)")
    q.add_argument("--queries", metavar="FILE",
                   help="batch mode: one text query per line ('-' = stdin); JSONL out")
    q.add_argument("-k", type=positive_int, default=5, help="number of results (at least 1)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    _migrate_args(sub.add_parser("migrate", help="migrate a corpus from gemini-embedding-001",
                                 parents=[common]))
    e = sub.add_parser("emulator", help="serve the Gemini API emulator", parents=[common])
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=8765)
    e.add_argument("--api-key", help="require this key (default: accept any non-empty key)")
    e.add_argument("--state-dir", help="persist files and jobs here across restarts")
    e.add_argument("--pending-seconds", type=float, default=0.0)
    e.add_argument("--running-seconds", type=float, default=0.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    from pipeline import logs

    try:
        logs.configure(logs.log_format(getattr(args, "log_format", None)), args.verbose)
    except ValueError as exc:
        print(f"embedpipe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if beam_args and not beam_args[0].startswith("-"):
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    from pipeline import commands
    from pipeline.config import ConfigError

    try:
        return commands.dispatch(args, beam_args)
    except ConfigError as exc:
        print(f"embedpipe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as exc:
        print(f"embedpipe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        hint = commands.resume_hint or "nothing was started"
        print(f"\nembedpipe: interrupted; {hint}", file=sys.stderr)
        return EXIT_FAIL
    except Exception as exc:
        from pipeline.run import BudgetExceeded, RunNotApproved

        print(f"embedpipe: {exc}" if isinstance(exc, (BudgetExceeded, RunNotApproved))
              else f"embedpipe: {type(exc).__name__}: {exc}", file=sys.stderr)
        if isinstance(exc, (BudgetExceeded, RunNotApproved)):
            return EXIT_USAGE
        # the last line of defence: a message, not a traceback (-v shows it)
        logging.getLogger("embedpipe").info("failure", exc_info=True)
        return EXIT_FAIL


def print_json(payload) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
    sys.exit(main())
