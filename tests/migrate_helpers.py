"""Shared by the ``test_migrate_*`` tests: a generated 001 legacy store, a Gemini API
emulator the tests can audit, a migration config pointing at it, and the CLI in-process."""
from __future__ import annotations

import importlib.util
import json
import secrets
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
KEY_ENV = "EMBEDPIPE_MIGRATE_TEST_KEY"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CORPUS = load_script("legacy_corpus")


@pytest.fixture(scope="session")
def emulator():
    """(server, base_url, key): one emulator for the migration tests; they compare its books
    before and after a step to prove what the step spent."""
    from pipeline.emulator import EmulatorServer

    key = secrets.token_urlsafe(16)
    with EmulatorServer(api_key=key) as server:
        yield server, server.base_url, key


@pytest.fixture(scope="session")
def legacy_vectors(emulator):
    """The corpus rows and their 001 vectors (768-d), embedded once per session."""
    _, base_url, key = emulator
    rows = CORPUS.legacy_rows()
    return rows, CORPUS.embed_001(rows, base_url, key, 768)


@pytest.fixture()
def api_key(emulator, monkeypatch):
    monkeypatch.setenv(KEY_ENV, emulator[2])
    return emulator[2]


def write_config(path: Path, base_url: str, migration: dict | None = None, *,
                 key_env: str = KEY_ENV, **top) -> Path:
    """A migration config for the target model, talking to ``base_url`` like the real API,
    with the key in ``key_env``."""
    tree = {
        "backend": "gemini",
        "model": "gemini-embedding-2",
        "dimensionality": 768,
        "limits_dir": str(CONFIGS / "limits"),
        "pricing_file": str(CONFIGS / "pricing.yaml"),
        "gemini": {"base_url": base_url, "api_key_env": key_env, "poll_interval_s": 0.05,
                   "max_poll_interval_s": 0.2, "retry_attempts": 2},
        "index": {"memory_budget": "1G"},
        "migration": {"task_types_file": str(CONFIGS / "task_types.yaml"), **(migration or {})},
        **top,
    }
    path.write_text(yaml.safe_dump(tree))
    return path


def migrate_with_stderr(capsys, *args: str) -> tuple[int, dict, str]:
    """``embedpipe migrate ...`` in this process: (exit code, JSON summary on stdout, stderr)."""
    capsys.readouterr()
    code = main(["migrate", *map(str, args)])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else {}), captured.err


def migrate(capsys, *args: str) -> tuple[int, dict]:
    code, summary, _ = migrate_with_stderr(capsys, *args)
    return code, summary


def query(capsys, output, text: str, k: int = 5) -> tuple[int, list]:
    capsys.readouterr()
    code = main(["query", "--output", str(output), text, "-k", str(k), "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else [])


def billed(server) -> tuple[int, int, int]:
    """(batch jobs created, batch tokens billed, sync tokens billed) so far."""
    stats = server.stats()
    return stats["jobs_created"], stats["batch_billed_tokens"], stats["sync_billed_tokens"]
