"""``embedpipe migrate <step>``: thin wrappers that load the migration's state, run one
step, print its JSON summary on stdout and return the exit code (0 ok, 2 refused, 3 dead
letters over tolerance)."""
from __future__ import annotations

from pipeline.cli import EXIT_OK, EXIT_USAGE, print_json
from pipeline.config import ConfigError
from pipeline.migrate.layout import MigrationPaths
from pipeline.migrate.state import require_state


def _paths(args) -> MigrationPaths:
    from pipeline.migrate.legacy import absolute

    return MigrationPaths(absolute(args.output))


def _fraction(value: float | None, default: float) -> float:
    if value is None:
        return default
    if not 0 < value <= 1:
        raise ConfigError(f"--fraction: {value} must be in (0, 1] (e.g. 0.1 for a tenth)")
    return value


def cmd_import(args, beam_args) -> int:
    from pipeline.migrate.config import load_migration_config
    from pipeline.migrate.legacy import import_legacy

    paths = _paths(args)
    migration = load_migration_config(args.config, paths.output, args.overrides)
    summary, code = import_legacy(paths, migration, args.legacy, tuple(beam_args))
    print_json(summary)
    return code


def cmd_plan(args, beam_args) -> int:
    import sys

    from pipeline.migrate.plan import plan_migration

    paths = _paths(args)
    state, migration = require_state(paths)
    fraction = None if args.fraction is None else _fraction(args.fraction, 1.0)
    plan, within = plan_migration(paths, state, migration, fraction)
    print_json(plan)
    if not within:
        option = plan[plan["requested"]]["to_pay"]
        print(f"embedpipe: the {plan['requested']} re-embedding still costs "
              f"${option['estimated_cost']['batch_usd']:.4f} at batch price for "
              f"{option['tokens_total']} tokens, over max_cost_usd=${plan['max_cost_usd']:.4f} "
              "(fix: a smaller --fraction, or raise max_cost_usd in the migration config)", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_run(args, beam_args) -> int:
    from pipeline.migrate.reembed import reembed

    paths = _paths(args)
    state, migration = require_state(paths)
    summary, code = reembed(paths, state, migration, _fraction(args.fraction, 1.0), tuple(beam_args))
    print_json(summary)
    return code


def cmd_evaluate(args, beam_args) -> int:
    from pipeline.migrate.evaluate import evaluate

    paths = _paths(args)
    state, migration = require_state(paths)
    report = evaluate(paths, state, migration, args.queries, args.k, tuple(beam_args))
    print_json({k: v for k, v in report.items() if k not in ("most_changed",)})
    return EXIT_OK


def cmd_cutover(args, beam_args) -> int:
    from pipeline.migrate.cutover import cutover

    paths = _paths(args)
    state, migration = require_state(paths)
    summary, code = cutover(paths, state, migration, args.force)
    print_json(summary)
    if code:
        import sys

        failed = [c for c in summary["gate"]["checks"] if not c["passed"]]
        print("embedpipe: cut-over refused by the gate: " + "; ".join(
            f"{c['check']} = {c['value']} (needs {c['threshold']})" for c in failed), file=sys.stderr)
    return code


def cmd_rollback(args, beam_args) -> int:
    from pipeline.migrate.cutover import rollback

    paths = _paths(args)
    state, migration = require_state(paths)
    summary, code = rollback(paths, state, migration)
    print_json(summary)
    return code


STEPS = {
    "import": cmd_import,
    "plan": cmd_plan,
    "run": cmd_run,
    "evaluate": cmd_evaluate,
    "cutover": cmd_cutover,
    "rollback": cmd_rollback,
}


def dispatch(args, beam_args) -> int:
    return STEPS[args.migrate_command](args, beam_args)
