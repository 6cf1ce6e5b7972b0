"""SubmitBatchJobs and CollectResults on the driver: the ledger-guarded life of each
request file's batch job.

Runs in the process that holds the API key (never on workers, so the key is never
pickled into a pipeline): claim the ledger record → upload → create → poll → download
the output into ``results/``. Submission respects the enqueued-token quota and the
concurrent-job cap; later files wait for capacity ("waves").
"""
from __future__ import annotations

import logging
import os
import random
import socket
import sys
import time
from dataclasses import dataclass

from pipeline.ledger import Ledger, LedgerRecord
from pipeline.run_layout import RunPaths
from transforms import fs
from transforms.gemini_client import BatchClient, QuotaExhausted
from transforms.plan_requests import RequestFileInfo

_LOG = logging.getLogger(__name__)

ACTIVE = {"CREATED", "PENDING", "RUNNING"}
ENDED = {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "COLLECTED"}


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def display_name(run_id: str, request_name: str, attempt: int) -> str:
    return f"embedpipe-{run_id}-{request_name}-a{attempt}"


@dataclass(frozen=True)
class Capacity:
    quota_tokens: int
    max_jobs: int


def plan_waves(files: list[RequestFileInfo], capacity: Capacity) -> list[list[str]]:
    """Files grouped into waves that each fit the quota and the job cap (for plan.json)."""
    waves: list[list[str]] = [[]]
    tokens = 0
    for info in sorted(files, key=lambda f: f.name):
        if waves[-1] and (
            tokens + info.est_tokens > capacity.quota_tokens or len(waves[-1]) >= capacity.max_jobs
        ):
            waves.append([])
            tokens = 0
        waves[-1].append(info.name)
        tokens += info.est_tokens
    return [w for w in waves if w]


class JobDriver:
    """Moves every request file of one run through the ledger states."""

    def __init__(
        self,
        client: BatchClient,
        paths: RunPaths,
        files: list[RequestFileInfo],
        model: str,
        capacity: Capacity,
    ):
        self.client = client
        self.paths = paths
        self.files = sorted(files, key=lambda f: f.name)
        self.model = model
        self.capacity = capacity
        self.ledger = Ledger(paths.ledger)
        self.owner = owner_id()

    def records(self) -> dict[str, LedgerRecord]:
        return {r.request_name: r for r in self.ledger.all()}

    def submit_ready(self) -> int:
        """Submit unsubmitted files while capacity allows; returns how many were created."""
        records = self.records()
        active = [r for r in records.values() if r.state in ACTIVE]
        tokens = sum(r.est_tokens for r in active)
        jobs = len(active)
        created = 0
        for info in self.files:
            record = records.get(info.name)
            if record is not None and record.job_name:
                continue
            if jobs >= self.capacity.max_jobs or tokens + info.est_tokens > self.capacity.quota_tokens:
                break
            try:
                if self._submit(info, record):
                    created += 1
                    jobs += 1
                    tokens += info.est_tokens
            except QuotaExhausted as exc:
                _LOG.info("quota exhausted at create, waiting %.0fs for capacity", exc.retry_after_s)
                break
        return created

    def _submit(self, info: RequestFileInfo, record: LedgerRecord | None) -> bool:
        resumed = record is not None
        if record is None:
            record = LedgerRecord(
                request_name=info.name,
                display_name=display_name(self.paths.run_id, info.name, 1),
                owner=self.owner,
                est_tokens=info.est_tokens,
            )
            if not self.ledger.create(record):
                return False
        if not record.file_name:
            with fs.local_copy(info.path, suffix=".jsonl") as local:
                file_name = self.client.upload_jsonl(local, record.display_name)
            record = self.ledger.update(record, state="UPLOADED", file_name=file_name)
        job = self.client.find_job_by_display_name(record.display_name) if resumed else None
        if job is None:
            job = self.client.create_embeddings_job(self.model, record.file_name, record.display_name)
        self.ledger.update(
            record, state=job.state, job_name=job.name, attempts=record.attempts + 1
        )
        return True

    def refresh(self) -> dict[str, LedgerRecord]:
        """Poll every active job once and record its state."""
        records = self.records()
        for name, record in records.items():
            if record.state not in ACTIVE or not record.job_name:
                continue
            job = self.client.get_job(record.job_name)
            if job.state != record.state or job.output_file != record.output_file:
                records[name] = self.ledger.update(
                    record, state=job.state, output_file=job.output_file, error=job.error
                )
        return records

    def download_finished(self) -> int:
        """Download each SUCCEEDED job's output into results/ (once)."""
        done = 0
        for record in self.records().values():
            if record.state != "SUCCEEDED" or not record.output_file:
                continue
            target = fs.join(self.paths.results, f"{record.request_name}.jsonl")
            with fs.open_write(target) as fh:
                for line in self.client.download_lines(record.output_file):
                    fh.write(line.rstrip("\n").encode("utf-8") + b"\n")
            self.ledger.update(record, state="COLLECTED")
            done += 1
        return done

    def pending(self) -> bool:
        records = self.records()
        return any(
            info.name not in records
            or not records[info.name].job_name
            or records[info.name].state not in ENDED
            for info in self.files
        )

    def summary(self) -> dict[str, int]:
        records = self.records()
        counts: dict[str, int] = {}
        for info in self.files:
            state = records[info.name].state if info.name in records else "UNSUBMITTED"
            counts[state] = counts.get(state, 0) + 1
        return counts

    def drive(self, poll_s: float, max_poll_s: float, once: bool = False) -> dict[str, int]:
        """Submit, poll and download until every file's job has ended (or one pass)."""
        delay = poll_s
        while True:
            self.submit_ready()
            self.refresh()
            self.download_finished()
            summary = self.summary()
            progress(summary)
            if once or not self.pending():
                return summary
            time.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(max_poll_s, max(delay * 1.5, 0.05))


def progress(summary: dict[str, int]) -> None:
    total = sum(summary.values())
    parts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(summary.items()))
    print(f"[embedpipe] jobs {total}: {parts}", file=sys.stderr, flush=True)
