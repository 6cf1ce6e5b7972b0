"""Files and batch jobs the emulator knows, in memory or persisted under ``--state-dir``.

With a state directory every record is a JSON file and every blob a file, each written
atomically (temp file + ``os.replace``), so a restarted emulator still knows the files
and jobs of its previous life, as the real service does. Job states are not stored as
such: they are derived from the wall clock on every read (``JobRecord.state``).
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
import string
import time
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pipeline.emulator.errors import invalid_argument
from transforms import fs

FILE_TTL_SECONDS = 48 * 3600
ENDED = ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")
ACTIVE = ("PENDING", "RUNNING")
_ALNUM = string.ascii_lowercase + string.digits
_FILE_REF = re.compile(r"(?:^|/)files/(?P<id>[a-z0-9][a-z0-9-]*)")


def new_id(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FileRecord:
    id: str
    display_name: str
    mime_type: str
    size_bytes: int
    sha256_hex: str
    source: str  # UPLOADED | GENERATED
    create_time: float
    active_at: float  # PROCESSING until then (video uploads), ACTIVE after

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    def state(self, now: float) -> str:
        return "ACTIVE" if now >= self.active_at else "PROCESSING"

    def resource(self, base_url: str, now: float) -> dict:
        """The File resource: camelCase, int64 as string, sha256Hash = base64(hex digest)."""
        out = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(self.size_bytes),
            "createTime": rfc3339(self.create_time),
            "updateTime": rfc3339(max(self.create_time, min(now, self.active_at))),
            "expirationTime": rfc3339(self.create_time + FILE_TTL_SECONDS),
            "sha256Hash": base64.b64encode(self.sha256_hex.encode()).decode(),
            "uri": f"{base_url}/v1beta/{self.name}",
            "state": self.state(now),
            "source": self.source,
        }
        if self.display_name:
            out["displayName"] = self.display_name
        if self.source == "GENERATED":
            out["downloadUri"] = f"{base_url}/download/v1beta/{self.name}:download?alt=media"
        return out


@dataclass
class JobRecord:
    id: str
    model: str  # models/<id>
    display_name: str
    input_file: str | None  # files/<id>, or None for inline requests
    request_count: int
    estimated_tokens: int
    create_time: float
    pending_until: float
    ends_at: float
    outcome: str  # SUCCEEDED | FAILED | EXPIRED: where the clock leads, unless cancelled
    error_code: int = 13
    error_message: str = ""
    shuffle: bool = False
    cancelled_at: float | None = None
    processed_at: float | None = None  # results computed (SUCCEEDED jobs only)
    successful: int = 0
    failed: int = 0
    billed_tokens: int = 0
    output_registered: bool = False  # files/batch-<id> visible
    held: str | None = None  # PENDING | RUNNING whatever the clock says, until released
    # The quota audit: what was already enqueued (active jobs, their tokens) when this
    # job was created, so a test can prove a client never created past the quota.
    enqueued_jobs_at_create: int = 0
    enqueued_tokens_at_create: int = 0

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    @property
    def output_file_id(self) -> str:
        return f"batch-{self.id}"

    def state(self, now: float) -> str:
        if self.cancelled_at is not None:
            return "CANCELLED"
        if self.held:
            return self.held
        if now < self.pending_until:
            return "PENDING"
        if now < self.ends_at or (self.outcome == "SUCCEEDED" and self.processed_at is None):
            return "RUNNING"
        return self.outcome

    def end_time(self, now: float) -> float | None:
        state = self.state(now)
        if state == "CANCELLED":
            return self.cancelled_at
        if state == "SUCCEEDED":
            return max(self.ends_at, self.processed_at or 0.0)
        return self.ends_at if state in ENDED else None

    def release(self, now: float, hold: str | None = None) -> None:
        """End a hold (or move it on to ``hold``, e.g. from PENDING to RUNNING): the job
        goes on as if its held phase had started just now."""
        pending = max(0.0, self.pending_until - self.create_time)
        running = max(0.0, self.ends_at - self.pending_until)
        self.pending_until = now if "RUNNING" in (self.held, hold) else now + pending
        self.ends_at = self.pending_until + running
        self.held = hold

    def update_time(self, now: float) -> float:
        end = self.end_time(now)
        if end is not None:
            return end
        return self.pending_until if now >= self.pending_until else self.create_time


class Store:
    """Records and blobs behind one lock; persisted when ``state_dir`` is given."""

    def __init__(self, state_dir: str | Path | None = None) -> None:
        self.lock = threading.RLock()
        self.files: dict[str, FileRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self._blobs: dict[str, bytes] = {}
        self._dir = Path(state_dir) if state_dir else None
        if self._dir:
            for sub in ("files", "jobs", "blobs"):
                (self._dir / sub).mkdir(parents=True, exist_ok=True)
            self._load()

    def _load(self) -> None:
        for path in sorted((self._dir / "files").glob("*.json")):
            rec = FileRecord(**json.loads(path.read_text()))
            self.files[rec.id] = rec
        for path in sorted((self._dir / "jobs").glob("*.json")):
            rec = JobRecord(**json.loads(path.read_text()))
            self.jobs[rec.id] = rec

    def clear(self) -> None:
        with self.lock:
            for file_id in list(self.files):
                self.delete_file(file_id)
            for job_id in list(self.jobs):
                self.delete_job(job_id)
            self._blobs.clear()
            if self._dir:
                for path in (self._dir / "blobs").iterdir():
                    path.unlink()

    # -- blobs ---------------------------------------------------------------------
    def put_blob(self, key: str, data: bytes) -> None:
        if self._dir:
            fs.write_bytes(str(self._dir / "blobs" / key), data)
        else:
            with self.lock:
                self._blobs[key] = bytes(data)

    def get_blob(self, key: str) -> bytes:
        if self._dir:
            return (self._dir / "blobs" / key).read_bytes()
        with self.lock:
            return self._blobs[key]

    def delete_blob(self, key: str) -> None:
        if self._dir:
            (self._dir / "blobs" / key).unlink(missing_ok=True)
        else:
            with self.lock:
                self._blobs.pop(key, None)

    # -- records -------------------------------------------------------------------
    def add_file(self, file_id: str, data: bytes, *, display_name: str, mime_type: str,
                 source: str, now: float, active_at: float | None = None) -> FileRecord:
        rec = FileRecord(
            id=file_id, display_name=display_name, mime_type=mime_type, size_bytes=len(data),
            sha256_hex=hashlib.sha256(data).hexdigest(), source=source, create_time=now,
            active_at=now if active_at is None else active_at,
        )
        with self.lock:
            self.put_blob(file_id, data)
            self.files[file_id] = rec
            self._save("files", file_id, rec)
        return rec

    def delete_file(self, file_id: str) -> None:
        with self.lock:
            self.files.pop(file_id, None)
            self.delete_blob(file_id)
            if self._dir:
                (self._dir / "files" / f"{file_id}.json").unlink(missing_ok=True)

    def resolve_file(self, uri: str) -> tuple[bytes, str]:
        """``file_data.file_uri`` (name or URI) → (bytes, mime) of a known ACTIVE file, else 400."""
        m = _FILE_REF.search(uri)
        with self.lock:
            rec = self.files.get(m.group("id")) if m else None
            if rec is None:
                raise invalid_argument(f"File {uri} not found or not accessible.")
            if rec.state(time.time()) != "ACTIVE":
                raise invalid_argument(
                    f"The File {rec.name} is not in an ACTIVE state and usage is not allowed."
                )
            return self.get_blob(rec.id), rec.mime_type

    def save_job(self, rec: JobRecord) -> None:
        with self.lock:
            self.jobs[rec.id] = rec
            self._save("jobs", rec.id, rec)

    def delete_job(self, job_id: str) -> None:
        with self.lock:
            self.jobs.pop(job_id, None)
            if self._dir:
                (self._dir / "jobs" / f"{job_id}.json").unlink(missing_ok=True)

    def _save(self, kind: str, key: str, rec: object) -> None:
        if self._dir:
            payload = json.dumps(dataclasses.asdict(rec), sort_keys=True).encode()
            fs.write_bytes(str(self._dir / kind / f"{key}.json"), payload)
