"""Where a run's files live (DESIGN.md "What a run leaves behind"), plus JSON helpers.

``<output>/runs/<run_id>/{plan.json, requests/, ledger/, results/, embeddings/,
deadletters/, index/, listing/, manifest.json}`` and ``<output>/current.json``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from transforms import fs


def new_run_id(fingerprint: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{fingerprint[:6]}"


@dataclass(frozen=True)
class RunPaths:
    output: str
    run_id: str

    @property
    def root(self) -> str:
        return fs.join(self.output, "runs", self.run_id)

    def _sub(self, *parts: str) -> str:
        return fs.join(self.root, *parts)

    @property
    def plan(self) -> str:
        return self._sub("plan.json")

    @property
    def manifest(self) -> str:
        return self._sub("manifest.json")

    @property
    def run_state(self) -> str:
        return self._sub("run.json")

    @property
    def requests(self) -> str:
        return self._sub("requests")

    @property
    def request_index(self) -> str:
        return self._sub("requests", "files.json")

    @property
    def media(self) -> str:
        return self._sub("media")

    @property
    def ledger(self) -> str:
        return self._sub("ledger")

    @property
    def results(self) -> str:
        return self._sub("results")

    @property
    def embeddings(self) -> str:
        return self._sub("embeddings")

    @property
    def deadletters(self) -> str:
        return self._sub("deadletters")

    @property
    def listing(self) -> str:
        return self._sub("listing")

    @property
    def index(self) -> str:
        return self._sub("index")

    @property
    def current(self) -> str:
        return fs.join(self.output, "current.json")


def write_json(uri: str, payload) -> None:
    fs.write_bytes(uri, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def read_json(uri: str):
    return json.loads(fs.read_bytes(uri))


def read_jsonl_glob(pattern: str):
    """Stream every JSON line of every file matching ``pattern``."""
    for path, _size in fs.match(pattern):
        for line in fs.iter_lines(path):
            if line.strip():
                yield json.loads(line)


def checksum(uri: str) -> str:
    digest = hashlib.sha256()
    with fs.open_read(uri) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_run(output: str, run_id: str | None, accept=None) -> RunPaths:
    """The named run, or the newest run under ``output`` (by id, which sorts by time) that
    ``accept(paths)`` admits (e.g. skipping plan-only runs)."""
    if run_id:
        paths = RunPaths(output, run_id)
        if not fs.exists(paths.run_state):
            raise FileNotFoundError(f"--run {run_id}: no such run under {output}")
        return paths
    runs = sorted(path.replace("\\", "/").split("/")[-2]
                  for path, _ in fs.match(fs.join(output, "runs", "*", "run.json")))
    for candidate in reversed(runs):
        paths = RunPaths(output, candidate)
        if accept is None or accept(paths):
            return paths
    if runs:
        raise FileNotFoundError(
            f"--output {output}: no submitted run found ({len(runs)} plan-only or refused "
            "run(s) are never advanced; fix: embedpipe submit or run)"
        )
    raise FileNotFoundError(f"--output {output}: no runs found")
