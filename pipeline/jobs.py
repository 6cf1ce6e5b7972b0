"""SubmitBatchJobs and CollectResults on the driver: the ledger-guarded life of each
request file's batch job, with resubmission.

Runs in the process that holds the API key (never on workers, so the key is never
pickled into a pipeline). Every step is recorded in the ledger *before* the action it
guards and is idempotent, so a process killed at any point can be rerun:

    CLAIMED → UPLOADED → PENDING/RUNNING → SUCCEEDED → COLLECTED (results downloaded)
                                        ↘ FAILED/EXPIRED → re-claimed with a new display name
                                        ↘ CANCELLED (reported, not resubmitted)

A collected file whose keys failed retryably (or came back missing) spawns a follow-up
request file ``<family>-r<k>`` holding only those lines. Submission respects the
enqueued-token quota and the concurrent-job cap; later files wait for capacity.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import io
import json
import logging
import os
import random
import re
import socket
import sys
import tempfile
import time
from dataclasses import dataclass

import pyarrow.parquet as pq

from pipeline.ledger import Ledger, LedgerConflict, LedgerRecord
from pipeline.run_layout import RunPaths, write_json
from transforms import fs
from transforms.crash import crash_point
from transforms.gemini_client import (
    ApiCallError,
    BatchClient,
    GeminiClientError,
    QuotaExhausted,
    parse_result_line,
)
from transforms.plan_requests import STAGED_SCHEME, RequestFileInfo, select_lines, staged_media

_LOG = logging.getLogger(__name__)

ACTIVE = {"PENDING", "RUNNING"}
RESUBMITTABLE = {"FAILED", "EXPIRED"}
STALE_AFTER_S = 600.0
DOWNLOAD_WORKERS = 8  # concurrent result downloads (each streams; memory ~ one line each)
_KEY = re.compile(rb'"key"\s*:\s*"([^"]+)"')
_TOKENS = re.compile(rb'"(?:tokenCount|promptTokenCount)"\s*:\s*"?(\d+)')
_ASCII_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.strip() removes in ASCII


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def display_name(run_id: str, request_name: str, attempt: int) -> str:
    return f"embedpipe-{run_id}-{request_name}-a{attempt}"


def family_of(request_name: str) -> str:
    return request_name.split("-r", 1)[0]


def followup_name(request_name: str) -> str:
    family, _, k = request_name.partition("-r")
    return f"{family}-r{int(k or 0) + 1}"


def key_attempts(request_name: str) -> int:
    """How many times the keys of this file have been submitted (original = 1)."""
    _, _, k = request_name.partition("-r")
    return int(k or 0) + 1


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


def _pid_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: only the lease can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(record: LedgerRecord, now: dt.datetime | None = None) -> bool:
    """A claim whose owner died (same host) or has not touched it within the lease."""
    if not _pid_alive(record.owner):
        return True
    updated = dt.datetime.fromisoformat(record.updated_at)
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now - updated).total_seconds() > STALE_AFTER_S


class ResultScan:
    """A writable sink for a downloading result file: lines go to ``out`` as they arrive
    (stripped, blank ones dropped, line ends as text mode reads them); the keys seen and
    the keys to retry are noted and the billed tokens counted. Memory holds at most one
    partial line."""

    def __init__(self, out):
        self._out = out
        self._buffer = bytearray()
        self.seen: set[str] = set()
        self.retry: set[str] = set()
        self.billed = 0  # tokens of the successful lines

    def write(self, chunk: bytes) -> int:
        self._buffer += chunk
        cut = self._buffer.rfind(b"\n") + 1
        if cut:
            self._lines(bytes(self._buffer[:cut]))
            del self._buffer[:cut]
        return len(chunk)

    def close(self) -> None:
        """The end of the download: the last line may have no newline."""
        self._lines(bytes(self._buffer))
        self._buffer.clear()

    def _lines(self, block: bytes) -> None:
        if block.isascii():  # the usual case: bytes all the way (ASCII strips like text)
            lines = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in block else block
            for line in lines.split(b"\n"):
                self._line(line.strip(_ASCII_SPACE))
            return
        text = block.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        for line in text.split("\n"):
            self._line(line.strip().encode("utf-8"))

    def _line(self, line: bytes) -> None:
        if not line:
            return
        self._out.write(line + b"\n")
        if b'"error"' in line:
            parsed = parse_result_line(line.decode("utf-8"))
            if parsed.key is not None:
                self.seen.add(parsed.key)
                if parsed.retryable:
                    self.retry.add(parsed.key)
        else:
            match = _KEY.search(line)
            if match:
                self.seen.add(match.group(1).decode("utf-8"))
            tokens = _TOKENS.search(line)
            self.billed += int(tokens.group(1)) if tokens else 0


class JobDriver:
    """Moves every request file of one run through the ledger states."""

    def __init__(
        self,
        client: BatchClient,
        paths: RunPaths,
        files: list[RequestFileInfo],
        model: str,
        capacity: Capacity,
        max_attempts: int = 3,
        download_workers: int = DOWNLOAD_WORKERS,
    ):
        self.client = client
        self.download_workers = download_workers
        self.paths = paths
        self.originals = sorted(files, key=lambda f: f.name)
        self.model = model
        self.capacity = capacity
        self.max_attempts = max_attempts
        self.ledger = Ledger(paths.ledger)
        self.owner = owner_id()

    # -- what there is ---------------------------------------------------------------
    def files(self) -> list[RequestFileInfo]:
        """Original request files plus every follow-up written so far."""
        followups = [
            RequestFileInfo.from_json(json.loads(fs.read_bytes(path)))
            for path, _ in fs.match(fs.join(self.paths.requests, "*-r*.info.json"))
        ]
        return self.originals + sorted(followups, key=lambda f: f.name)

    def records(self) -> dict[str, LedgerRecord]:
        return {r.request_name: r for r in self.ledger.all()}

    # -- submission ------------------------------------------------------------------
    def submit_ready(self) -> int:
        """Submit files that have no job yet while capacity allows; returns jobs created."""
        records = self.records()
        active = [r for r in records.values() if r.state in ACTIVE]
        tokens = sum(r.est_tokens for r in active)
        jobs = len(active)
        created = 0
        for info in self.files():
            record = records.get(info.name)
            if record is not None and (
                record.job_name or record.state == "CANCELLED" or record.state in RESUBMITTABLE
            ):
                continue  # has a job, or waits for reclaim_failed (bounded by max_attempts)
            if jobs >= self.capacity.max_jobs or tokens + info.est_tokens > self.capacity.quota_tokens:
                break
            try:
                if self._submit(info, record):
                    created += 1
                    jobs += 1
                    tokens += info.est_tokens
            except QuotaExhausted as exc:
                _LOG.info("quota exhausted at create; waiting %.0fs for capacity", exc.retry_after_s)
                break
            except LedgerConflict:
                continue
        return created

    def _claim(self, info: RequestFileInfo, record: LedgerRecord | None) -> LedgerRecord | None:
        """Own the file's ledger record, or None if another live process does."""
        if record is None:
            record = LedgerRecord(
                request_name=info.name,
                display_name=display_name(self.paths.run_id, info.name, 1),
                owner=self.owner,
                est_tokens=info.est_tokens,
            )
            if self.ledger.create(record):
                return self.ledger.get(info.name)
            record = self.ledger.get(info.name)
        if record.owner == self.owner:
            return record
        if not is_stale(record):
            return None
        return self.ledger.take_over(record, self.owner)

    def _submit(self, info: RequestFileInfo, record: LedgerRecord | None) -> bool:
        fresh = record is None
        record = self._claim(info, record)
        if record is None or record.job_name:
            return False
        crash_point("claimed")
        if not record.file_name:
            record = self._upload_staged_media(info, record)
            with self._request_with_uris(info, record) as local:
                file_name = self.client.upload_jsonl(local, record.display_name)
            record = self.ledger.update(record, state="UPLOADED", file_name=file_name)
        # A resumed claim may have died between create and the ledger update: look first.
        job = None if fresh else self.client.find_job_by_display_name(record.display_name)
        if job is None:
            try:
                job = self.client.create_embeddings_job(
                    self.model, record.file_name, record.display_name
                )
            except QuotaExhausted:
                raise
            except ApiCallError as exc:
                # The service refused this file: record it like a FAILED job, so it is
                # retried within max_attempts and then dead-lettered with the reason.
                self.ledger.update(record, state="FAILED", error=str(exc),
                                   attempts=record.attempts + 1)
                return False
        crash_point("created")
        self.ledger.update(
            record, state=job.state, job_name=job.name, attempts=record.attempts + 1,
            output_file=job.output_file,
        )
        return True

    def _upload_staged_media(self, info: RequestFileInfo, record: LedgerRecord) -> LedgerRecord:
        """Upload the large media this file references through the Files API (each
        upload recorded in the ledger at once, so a resumed submit does not repeat it)."""
        done = {m[0] for m in record.media_files}
        for name, mime in sorted(staged_media(info.path).items()):
            if name in done:
                continue
            with fs.local_copy(fs.join(self.paths.media, name), suffix=os.path.splitext(name)[1]) as local:
                ref = self.client.upload_media(local, mime, f"{record.display_name}-{name}")
            record = self.ledger.update(
                record, media_files=record.media_files + ((name, ref.name, ref.uri),)
            )
        return record

    @contextlib.contextmanager
    def _request_with_uris(self, info: RequestFileInfo, record: LedgerRecord):
        """The request file as uploaded: staged references replaced by Files API URIs."""
        if not record.media_files:
            with fs.local_copy(info.path, suffix=".jsonl") as local:
                yield local
            return
        swaps = {f'"{STAGED_SCHEME}{name}"': f'"{uri}"' for name, _file, uri in record.media_files}
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as out:
            for line in fs.iter_lines(info.path):
                if STAGED_SCHEME in line:
                    for old, new in swaps.items():
                        line = line.replace(old, new)
                out.write(line if line.endswith("\n") else line + "\n")
            out.flush()
            yield out.name

    def _delete_media(self, record: LedgerRecord) -> None:
        """Uploaded media are deleted once their job is over (they would expire in 48 h)."""
        for _name, file_name, _uri in record.media_files:
            try:
                self.client.delete_file(file_name)
            except GeminiClientError as exc:
                _LOG.warning("could not delete %s: %s", file_name, exc)

    # -- polling and collection ------------------------------------------------------
    def refresh(self) -> None:
        """Poll every active job once and record its state (no other side effect)."""
        for record in self.records().values():
            # a job can report SUCCEEDED before its output file is there: keep polling it
            waiting = record.state in ACTIVE or (record.state == "SUCCEEDED" and not record.output_file)
            if waiting and record.job_name:
                job = self.client.get_job(record.job_name)
                if job.state != record.state or job.output_file != record.output_file:
                    self.ledger.update(
                        record, state=job.state, output_file=job.output_file, error=job.error
                    )
                crash_point("polled")

    def reclaim_failed(self) -> None:
        """Re-claim FAILED/EXPIRED files that still have attempts left; of two processes
        doing this at once exactly one wins (``take_over`` of that record version)."""
        for record in self.records().values():
            if record.state in RESUBMITTABLE and record.attempts < self.max_attempts:
                try:
                    self._resubmit_whole(self.ledger.take_over(record, self.owner))
                except LedgerConflict:
                    continue

    def _resubmit_whole(self, record: LedgerRecord) -> None:
        """A FAILED or EXPIRED job gets a new job for the same file (new display name);
        the re-claim is written first so a crash cannot create two."""
        _LOG.warning("job %s ended %s (%s); resubmitting %s",
                     record.job_name, record.state, record.error, record.request_name)
        self._delete_media(record)
        self.ledger.update(
            record,
            state="CLAIMED",
            owner=self.owner,
            display_name=display_name(self.paths.run_id, record.request_name, record.attempts + 1),
            job_name=None,
            file_name=None,  # uploads expire after 48 h, as EXPIRED jobs have
            media_files=(),
            output_file=None,
            history=record.history + ((record.job_name, record.state, record.error),),
        )

    def download_finished(self) -> int:
        """Download every SUCCEEDED job's output into results/ and decide its follow-up.

        Downloads run concurrently (at most ``download_workers`` at once), each streamed
        line by line into its results file; the ledger is updated here, in this thread,
        as each one completes. A failed download leaves its record SUCCEEDED (the next
        pass downloads it again) and is raised once the others are recorded."""
        ready = [r for r in self.records().values() if r.state == "SUCCEEDED" and r.output_file]
        if not ready:
            return 0
        done, failure = 0, None
        workers = max(1, min(self.download_workers, len(ready)))
        with concurrent.futures.ThreadPoolExecutor(workers, "embedpipe-download") as pool:
            pending = {pool.submit(self._download, record): record for record in ready}
            for future in concurrent.futures.as_completed(pending):
                record = pending[future]
                try:
                    scan = future.result()
                except Exception as exc:  # noqa: BLE001 - the others still get recorded
                    failure = failure or exc
                    continue
                crash_point("downloaded")
                followup = self._followup(record.request_name, scan.retry, scan.seen)
                self._delete_media(record)
                self.ledger.update(record, state="COLLECTED", followup=followup,
                                   billed_tokens=scan.billed)
                done += 1
        if failure is not None:
            raise failure
        return done

    def _download(self, record: LedgerRecord) -> "ResultScan":
        target = fs.join(self.paths.results, f"{record.request_name}.jsonl")
        scans: list[ResultScan] = []

        @contextlib.contextmanager
        def sink():  # a fresh file and scan per attempt: a retried download starts over
            with fs.open_write(target) as fh:
                scan = ResultScan(fh)
                yield scan
                scan.close()
            scans.append(scan)

        self.client.download_to(record.output_file, sink)
        return scans[-1]

    def _followup(self, request_name: str, retry: set[str], seen: set[str]) -> str:
        """Write ``<family>-r<k>`` with the keys to try again; '' when none or out of attempts."""
        info = self._info(request_name)
        keys = pq.read_table(io.BytesIO(fs.read_bytes(info.keys_path)))
        wanted = {k for k in keys.column("chunk_id").to_pylist() if k in retry or k not in seen}
        if not wanted or key_attempts(request_name) >= self.max_attempts:
            return ""
        name = followup_name(request_name)
        original = self._info(family_of(request_name))
        child = select_lines(original, wanted, self.paths.requests, name)
        write_json(fs.join(self.paths.requests, f"{name}.info.json"), child.to_json())
        return name

    def _info(self, name: str) -> RequestFileInfo:
        for info in self.files():
            if info.name == name:
                return info
        raise KeyError(f"request file {name} is not part of run {self.paths.run_id}")

    # -- progress --------------------------------------------------------------------
    def pending(self) -> bool:
        records = self.records()
        for info in self.files():
            record = records.get(info.name)
            if record is None or not self._final(record):
                return True
        return False

    def _final(self, record: LedgerRecord) -> bool:
        if record.state in {"COLLECTED", "CANCELLED"}:
            return True
        return record.state in RESUBMITTABLE and record.attempts >= self.max_attempts

    def summary(self) -> dict[str, int]:
        records = self.records()
        counts: dict[str, int] = {}
        for info in self.files():
            state = records[info.name].state if info.name in records else "UNSUBMITTED"
            counts[state] = counts.get(state, 0) + 1
        return counts

    def drive(self, poll_s: float, max_poll_s: float, once: bool = False,
              timer=lambda phase: contextlib.nullcontext()) -> dict[str, int]:
        """Submit, poll and download until every file's job has ended (or one pass).
        ``timer(phase)`` times the wait, submit and collect parts of each pass."""
        delay = poll_s
        while True:
            with timer("wait"):
                self.refresh()
            with timer("submit"):
                self.reclaim_failed()
            with timer("collect"):
                self.download_finished()
            with timer("submit"):
                self.submit_ready()
            summary = self.summary()
            progress(summary)
            if once or not self.pending():
                return summary
            with timer("wait"):
                time.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(max_poll_s, max(delay * 1.5, 0.05))


def progress(summary: dict[str, int]) -> None:
    total = sum(summary.values())
    parts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(summary.items())) or "nothing to submit"
    print(f"[embedpipe] request files {total}: {parts}", file=sys.stderr, flush=True)
