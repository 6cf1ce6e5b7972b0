"""``<output>/migration/state.json``: what each step did, so the next step (and a rerun)
knows where things are. Written whole and atomically after each step; one migration
command at a time per output (the batch work itself is ledger-guarded regardless).
"""
from __future__ import annotations

import datetime as dt

from pipeline.config import ConfigError
from pipeline.migrate.config import Migration
from pipeline.migrate.layout import MigrationPaths
from pipeline.run_layout import read_json, write_json
from transforms import fs

SCHEMA = "embedpipe.migration/1"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_state(paths: MigrationPaths) -> dict | None:
    return read_json(paths.state) if fs.exists(paths.state) else None


def require_state(paths: MigrationPaths) -> tuple[dict, Migration]:
    """The state of an imported migration, or exit 2 saying what to run first."""
    state = read_state(paths)
    if state is None or "legacy" not in state:
        raise ConfigError(
            f"--output {paths.output}: no imported legacy store (fix: run `embedpipe migrate "
            "import --config FILE --legacy PATH --output OUT` first)"
        )
    return state, Migration.from_json(state["migration"])


def write_state(paths: MigrationPaths, state: dict) -> None:
    state["updated_at"] = now()
    write_json(paths.state, state)
