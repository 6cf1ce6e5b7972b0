"""Batch embedding jobs: create, lifecycle, background processing, Operation rendering.

A job's state is derived lazily from the wall clock (PENDING until ``pending_until``,
RUNNING until ``ends_at``, then its planned outcome). Results of a job bound to succeed
are computed by one background worker thread once the job is RUNNING, so a large create
returns at once and the job stays RUNNING until its output exists, as with the real
service; processing a stopped emulator did not finish is resumed on restart. The output
file ``files/batch-<id>`` becomes visible when a read first sees the job SUCCEEDED.

Processing is crash-safe with a state directory: the output blob is written first, then
the job is recorded as processed, and only then is its input snapshot deleted, so a
process killed at any step (``EMBEDPIPE_CRASH_AT=emulator-output-written`` or
``emulator-job-saved``) leaves a job the next life finishes, never one RUNNING forever.
Held jobs (``FaultConfig.hold_jobs``) are processed once released.
"""
from __future__ import annotations

import heapq
import json
import logging
import random
import threading
import time
from typing import Iterator

import numpy as np

from pipeline.emulator.embedder import Embedder, model_id, pick
from pipeline.emulator.errors import ApiError, invalid_argument, permission_denied, resource_exhausted
from pipeline.emulator.faults import Faults
from pipeline.emulator.state import ACTIVE, ENDED, JobRecord, Store, new_id, rfc3339
from transforms.crash import crash_point
from transforms.settings import ModelLimits

log = logging.getLogger(__name__)

_META_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch"
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatchOutput"
QUOTA_RETRY_DELAY_S = 30.0


def json_values(vec: np.ndarray) -> list[float]:
    """Vector as JSON numbers, rounded to keep output lines compact."""
    return np.round(vec.astype(np.float64), 8).tolist()


def success_response(values: np.ndarray, token_count: int) -> dict:
    return {"embedding": {"values": json_values(values)}, "tokenCount": str(token_count)}


class BatchService:
    """Owns the batch jobs of one emulator: the API handlers call into it."""

    def __init__(self, store: Store, embedder: Embedder, faults: Faults, *,
                 pending_seconds: float, running_seconds: float, quota_tokens: int | None) -> None:
        self.store = store
        self.embedder = embedder
        self.faults = faults
        self.pending_seconds = pending_seconds
        self.running_seconds = running_seconds
        self.quota_tokens = quota_tokens
        self.jobs_created = 0
        self._due: list[tuple[float, str]] = []  # (pending_until, job id) heap
        self._wakeup = threading.Condition()
        self._in_flight = 0  # jobs the worker is processing right now (see wait_idle)
        self._stopping = False
        self._worker: threading.Thread | None = None

    # -- worker ----------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="emulator-batch-worker", daemon=True)
        self._worker.start()
        with self.store.lock:
            jobs = list(self.store.jobs.values())
        for job in jobs:
            if job.processed_at is not None:  # a previous life died before deleting it
                self.store.delete_blob(f"input-{job.id}")
            elif job.outcome == "SUCCEEDED" and job.cancelled_at is None and not job.held:
                self._schedule(job)  # a job a previous life did not finish

    def stop(self) -> None:
        if self._worker:
            with self._wakeup:
                self._stopping = True
                self._wakeup.notify()
            self._worker.join(timeout=10)
            self._worker = None

    def _schedule(self, job: JobRecord) -> None:
        """Queue a job's processing for when it starts RUNNING."""
        with self._wakeup:
            heapq.heappush(self._due, (job.pending_until, job.id))
            self._wakeup.notify()

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._stopping and (not self._due or self._due[0][0] > time.time()):
                    self._wakeup.wait(self._due[0][0] - time.time() if self._due else None)
                if self._stopping:
                    return
                _, job_id = heapq.heappop(self._due)
                self._in_flight += 1
            try:
                self._process(job_id)
            except Exception:  # never let one job kill the worker
                log.exception("emulator: processing %s failed", job_id)
            finally:
                with self._wakeup:
                    self._in_flight -= 1
                    self._wakeup.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every job that is due has been processed (none in flight, none
        waiting); jobs not due yet (pending, held) do not count. False on timeout."""
        deadline = time.monotonic() + timeout
        with self._wakeup:
            while self._in_flight or (self._due and self._due[0][0] <= time.time()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wakeup.wait(min(left, 0.05))
        return True

    # -- create ----------------------------------------------------------------------
    def create(self, model: str, body: object) -> JobRecord:
        limits = self.embedder.limits_for(model)
        batch = pick(body, "batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            raise invalid_argument("* AsyncBatchEmbedContentRequest.batch: batch is required.")
        display_name = str(pick(batch, "display_name", "displayName") or "")
        config = pick(batch, "input_config", "inputConfig")
        if not isinstance(config, dict):
            raise invalid_argument("* EmbedContentBatch.input_config: input_config is required.")
        file_name = pick(config, "file_name", "fileName")
        inline = pick(config, "requests")
        if (file_name is None) == (inline is None):
            raise invalid_argument("input_config needs exactly one of file_name or requests.")
        job_id = new_id(36)
        if file_name is not None:
            data = self._input_file(str(file_name), limits)
            requests = list(_file_requests(data))
        else:
            items = pick(inline, "requests") if isinstance(inline, dict) else None
            if not isinstance(items, list):
                raise invalid_argument("input_config.requests.requests must be a list.")
            data = json.dumps(items).encode()
            if len(data) > limits.inline_request_bytes:
                raise invalid_argument(
                    f"Inline batch requests total {len(data)} bytes, over the limit of "
                    f"{limits.inline_request_bytes} bytes; use an input file instead."
                )
            requests = [(str(i), pick(item, "request") if isinstance(item, dict) else None)
                        for i, item in enumerate(items)]
        if not requests:
            raise invalid_argument("The batch input contains no requests.")
        estimated = sum(self.embedder.estimate_tokens(model, req) for _, req in requests)
        now = time.time()
        with self.store.lock:
            enqueued_jobs, enqueued_tokens = self._enqueued(now)
            self._check_quota(enqueued_tokens, estimated)
            plan = self.faults.plan_job(f"batches/{job_id}")
            pending_until = now + self.pending_seconds
            ends_at = pending_until + self.running_seconds + plan.extra_running_seconds
            outcome = plan.outcome
            expiry = now + limits.job_expiry_hours * 3600
            if ends_at > expiry:  # pending/running beyond the expiry window
                ends_at, outcome = expiry, "EXPIRED"
            if outcome == "SUCCEEDED":  # a snapshot: the caller may delete its input file now
                self.store.put_blob(f"input-{job_id}", data)
            job = JobRecord(
                id=job_id, model=f"models/{model_id(model)}", display_name=display_name,
                input_file=str(file_name) if file_name is not None else None,
                request_count=len(requests), estimated_tokens=estimated, create_time=now,
                pending_until=pending_until, ends_at=ends_at, outcome=outcome,
                error_code=plan.error_code, error_message=plan.error_message, shuffle=plan.shuffle,
                held=plan.hold, enqueued_jobs_at_create=enqueued_jobs,
                enqueued_tokens_at_create=enqueued_tokens,
            )
            self.store.save_job(job)
            self.jobs_created += 1
        if outcome == "SUCCEEDED" and not job.held:
            self._schedule(job)
        log.info("emulator: created %s (%s, %d requests, ~%d tokens, outcome %s)",
                 job.name, display_name, len(requests), estimated, outcome)
        return job

    def _input_file(self, file_name: str, limits: ModelLimits) -> bytes:
        file_id = file_name.split("files/", 1)[-1]
        with self.store.lock:
            rec = self.store.files.get(file_id)
            if rec is None:
                raise permission_denied(
                    f"You do not have permission to access the File {file_name} or it may not exist."
                )
            if rec.size_bytes > limits.input_file_bytes:
                raise invalid_argument(
                    f"Input file {file_name} is {rec.size_bytes} bytes, over the limit of "
                    f"{limits.input_file_bytes} bytes."
                )
            return self.store.get_blob(file_id)

    def _check_quota(self, active: int, estimated: int) -> None:
        if self.quota_tokens is None:
            return
        if active + estimated > self.quota_tokens:
            raise resource_exhausted(
                f"Enqueued token quota exceeded: {active} tokens already enqueued, this batch "
                f"needs ~{estimated}, limit {self.quota_tokens}. Retry when active jobs finish.",
                QUOTA_RETRY_DELAY_S,
            )

    def _enqueued(self, now: float) -> tuple[int, int]:
        """(jobs, estimated tokens) of the jobs active at ``now``."""
        with self.store.lock:
            active = [j for j in self.store.jobs.values() if j.state(now) in ACTIVE]
            return len(active), sum(j.estimated_tokens for j in active)

    def active_tokens(self, now: float) -> int:
        return self._enqueued(now)[1]

    # -- processing ------------------------------------------------------------------
    def _process(self, job_id: str) -> None:
        with self.store.lock:
            job = self.store.jobs.get(job_id)
            if job is None or job.cancelled_at is not None or job.held or job.processed_at:
                return  # gone, held (scheduled again on release) or already done
            source = self.store.get_blob(f"input-{job_id}")
        if job.input_file:
            results = [self._file_line(job, key, req) for key, req in _file_requests(source)]
            ok = [r for r in results if "response" in r]
            if job.shuffle:
                random.Random(self.faults.shuffle_seed(job.name)).shuffle(results)
            blob_key = job.output_file_id
            payload = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in results).encode()
        else:
            items = json.loads(source)
            results = [self._inline_item(job, str(i), item) for i, item in enumerate(items)]
            ok = [r for r in results if "response" in r]
            blob_key = f"inline-{job_id}"
            payload = json.dumps(results).encode()
        tokens = sum(int(r["response"]["tokenCount"]) for r in ok)
        with self.store.lock:
            job = self.store.jobs.get(job_id)
            if job is None or job.cancelled_at is not None:
                return
            self.store.put_blob(blob_key, payload)
            crash_point("emulator-output-written")
            job.successful, job.failed = len(ok), len(results) - len(ok)
            job.billed_tokens = tokens
            job.processed_at = time.time()
            self.store.save_job(job)
            crash_point("emulator-job-saved")
            self.store.delete_blob(f"input-{job_id}")  # last: until here a restart redoes it

    def _embed_or_error(self, job: JobRecord, key: str, request: object) -> dict:
        injected = self.faults.line_error(key)
        if injected:
            return {"error": injected}
        try:
            emb = self.embedder.embed(job.model, request)
        except ApiError as err:
            return {"error": err.line_status()}
        return {"response": success_response(emb.values, emb.token_count)}

    def _file_line(self, job: JobRecord, key: str | None, request: object) -> dict:
        if request is _MALFORMED:
            out = {"error": {"code": 3, "message": "Invalid JSON line: expected an object with "
                                                   "'key' and 'request'."}}
        else:
            out = self._embed_or_error(job, key if key is not None else "", request)
        return out if key is None else {"key": key, **out}

    def _inline_item(self, job: JobRecord, index: str, item: object) -> dict:
        request = pick(item, "request") if isinstance(item, dict) else None
        out = self._embed_or_error(job, index, request)
        metadata = pick(item, "metadata") if isinstance(item, dict) else None
        return {**out, "metadata": metadata} if metadata is not None else out

    # -- reads and changes -----------------------------------------------------------
    def get(self, job_id: str) -> JobRecord:
        with self.store.lock:
            job = self.store.jobs.get(job_id)
            if job is None:
                raise ApiError(404, "Requested entity was not found.", "NOT_FOUND")
            return job

    def list(self) -> list[JobRecord]:
        with self.store.lock:
            return sorted(self.store.jobs.values(), key=lambda j: (-j.create_time, j.id))

    def release(self, names: list[str] | None = None, hold: str | None = None) -> list[str]:
        """Release held jobs (all, or those named ``batches/<id>``), or move their hold on
        to ``hold``; returns their names."""
        now = time.time()
        released = []
        with self.store.lock:
            for job in list(self.store.jobs.values()):
                if job.held and job.held != hold and (names is None or job.name in names):
                    job.release(now, hold)
                    self.store.save_job(job)
                    released.append(job)
        for job in released:
            if job.outcome == "SUCCEEDED" and job.cancelled_at is None and not job.held:
                self._schedule(job)
        return sorted(j.name for j in released)

    def cancel(self, job_id: str) -> None:
        with self.store.lock:
            job = self.get(job_id)
            if job.state(time.time()) in ENDED:
                return  # cancelling an ended job changes nothing
            job.cancelled_at = time.time()
            self.store.delete_blob(f"input-{job_id}")
            self.store.delete_blob(job.output_file_id)
            self.store.delete_blob(f"inline-{job_id}")
            self.store.save_job(job)

    def delete(self, job_id: str) -> None:
        with self.store.lock:
            job = self.get(job_id)
            self.store.delete_job(job_id)
            if not job.output_registered:
                self.store.delete_blob(job.output_file_id)
            self.store.delete_blob(f"input-{job_id}")
            self.store.delete_blob(f"inline-{job_id}")

    def settle_all(self) -> None:
        """Publish every output file that is due (before any Files API read)."""
        now = time.time()
        with self.store.lock:
            for job in list(self.store.jobs.values()):
                self._settle(job, now)

    def _settle(self, job: JobRecord, now: float) -> None:
        """Publish the output file the first time a read sees the job SUCCEEDED."""
        if job.output_registered or job.input_file is None or job.state(now) != "SUCCEEDED":
            return
        file_id = job.output_file_id
        data = self.store.get_blob(file_id)
        self.store.add_file(file_id, data, display_name=f"{job.name} output", mime_type="jsonl",
                            source="GENERATED", now=job.end_time(now) or now)
        job.output_registered = True
        self.store.save_job(job)

    # -- rendering -------------------------------------------------------------------
    def operation(self, job: JobRecord, *, full: bool = True) -> dict:
        """The google.longrunning.Operation for a job (``full=False`` for listings)."""
        now = time.time()
        with self.store.lock:  # one instant for the state and the output file it implies
            self._settle(job, now)
            state = job.state(now)
        n = job.request_count
        if state == "SUCCEEDED":
            stats = {"requestCount": n, "successfulRequestCount": job.successful,
                     "failedRequestCount": job.failed, "pendingRequestCount": 0}
        elif state in ACTIVE:
            stats = {"requestCount": n, "successfulRequestCount": 0, "failedRequestCount": 0,
                     "pendingRequestCount": n}
        else:
            stats = {"requestCount": n, "successfulRequestCount": 0, "failedRequestCount": 0,
                     "pendingRequestCount": 0}
        input_config = {"fileName": job.input_file} if job.input_file else {"requests": {}}
        meta = {
            "@type": _META_TYPE,
            "model": job.model,
            "displayName": job.display_name,
            "inputConfig": input_config,
            "createTime": rfc3339(job.create_time),
            "updateTime": rfc3339(job.update_time(now)),
            "batchStats": {k: str(v) for k, v in stats.items()},
            "state": f"BATCH_STATE_{state}",
            "name": job.name,
        }
        op: dict = {"name": job.name, "metadata": meta}
        if state not in ENDED:
            return op
        meta["endTime"] = rfc3339(job.end_time(now))
        op["done"] = True
        if state == "FAILED":
            op["error"] = {"code": job.error_code, "message": job.error_message}
        if state == "SUCCEEDED" and full:
            output = self._output(job)
            meta["output"] = output
            op["response"] = {"@type": _OUTPUT_TYPE, **output}
        return op

    def _output(self, job: JobRecord) -> dict:
        if job.input_file:
            return {"responsesFile": f"files/{job.output_file_id}"}
        items = json.loads(self.store.get_blob(f"inline-{job.id}"))
        return {"inlinedResponses": {"inlinedResponses": items}}


_MALFORMED = object()


def _file_requests(data: bytes) -> Iterator[tuple[str | None, object]]:
    """(key, request) per non-empty JSONL line; unparseable lines yield ``_MALFORMED``."""
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            yield None, _MALFORMED
            continue
        if not isinstance(obj, dict) or "request" not in obj:
            key = obj.get("key") if isinstance(obj, dict) else None
            yield (None if key is None else str(key)), _MALFORMED
            continue
        key = obj.get("key")
        yield (None if key is None else str(key)), obj["request"]
