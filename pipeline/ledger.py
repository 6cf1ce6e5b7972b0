"""The job ledger: one create-only record per request file, written BEFORE the batch job
is created, so no two processes (or a rerun) can ever both create a job for it.

Local: a fsynced temp file hard-linked into place (exclusive create, never seen half
written); updates replace the file atomically.
GCS: ``if_generation_match=0`` to create, the read generation to update (compare-and-set).
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field, replace

from transforms import fs


class LedgerConflict(RuntimeError):
    """Another process created or updated this record first."""


@dataclass(frozen=True)
class LedgerRecord:
    request_name: str
    display_name: str
    owner: str
    state: str = "CLAIMED"  # CLAIMED → UPLOADED → PENDING/RUNNING → ended → COLLECTED
    file_name: str | None = None
    job_name: str | None = None
    output_file: str | None = None
    attempts: int = 0
    error: str | None = None
    est_tokens: int = 0
    followup: str | None = None  # follow-up request file for failed keys ('' = none)
    media_files: tuple = ()  # ((staged name, Files API name, uri), ...) uploaded for this file
    billed_tokens: int = 0  # tokens of the successful result lines, counted at download
    history: tuple = field(default_factory=tuple)
    updated_at: str = ""
    version: int = 0  # +1 on every update: names a record version (see take_over)

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LedgerRecord":
        raw = json.loads(data)
        for name in ("history", "media_files"):
            raw[name] = tuple(tuple(h) if isinstance(h, list) else h for h in raw.get(name, ()))
        return cls(**raw)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Ledger:
    """Create-only records under ``<run>/ledger/<request_name>.json``."""

    def __init__(self, ledger_dir: str):
        self._dir = ledger_dir
        self._generations: dict[str, int] = {}
        if not fs.is_remote(ledger_dir):
            os.makedirs(ledger_dir, exist_ok=True)

    def _path(self, name: str) -> str:
        return fs.join(self._dir, f"{name}.json")

    def _blob(self, name: str):
        from google.cloud import storage

        bucket, _, key = self._path(name)[len("gs://"):].partition("/")
        return storage.Client().bucket(bucket).blob(key)

    def create(self, record: LedgerRecord) -> bool:
        """True if this call created the record; False if it already existed."""
        record = replace(record, updated_at=_now())
        generation = fs.create_only(self._path(record.request_name), record.to_bytes())
        if generation is None:
            return False
        self._generations[record.request_name] = generation
        return True

    def get(self, name: str) -> LedgerRecord | None:
        if fs.is_remote(self._dir):
            from google.api_core.exceptions import NotFound

            blob = self._blob(name)
            try:
                data = blob.download_as_bytes()
            except NotFound:
                return None
            self._generations[name] = blob.generation
            return LedgerRecord.from_bytes(data)
        try:
            with open(self._path(name), "rb") as fh:
                return LedgerRecord.from_bytes(fh.read())
        except FileNotFoundError:
            return None

    def update(self, record: LedgerRecord, **changes) -> LedgerRecord:
        """Replace a record (GCS: only if nobody changed it since the version we hold)."""
        updated = replace(record, **changes, updated_at=_now(), version=record.version + 1)
        data = updated.to_bytes()
        if fs.is_remote(self._dir):
            from google.api_core.exceptions import PreconditionFailed

            generation = self._generations.get(record.request_name)
            if generation is None:  # this Ledger never read it: check the version we hold
                current = self.get(record.request_name)
                if current is None or current.version != record.version:
                    raise LedgerConflict(f"ledger record {record.request_name} changed under us")
                generation = self._generations[record.request_name]
            blob = self._blob(record.request_name)
            try:
                blob.upload_from_string(data, if_generation_match=generation)
            except PreconditionFailed as exc:
                raise LedgerConflict(
                    f"ledger record {record.request_name} changed under us"
                ) from exc
            self._generations[record.request_name] = blob.generation
        else:
            fs.write_bytes(self._path(record.request_name), data)
        return updated

    def take_over(self, record: LedgerRecord, owner: str) -> LedgerRecord:
        """Claim a stale record for ``owner``; exactly one contender wins.

        GCS: the update is a compare-and-set on the generation read with the record.
        Local: an exclusive-create marker named after the record version being replaced
        (its ``version`` counter, so two versions can never share a marker).
        Raises LedgerConflict for the losers.
        """
        if not fs.is_remote(self._dir):
            marker = self._path(record.request_name) + f".takeover-v{record.version}"
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError as exc:
                raise LedgerConflict(f"ledger record {record.request_name} already taken over") from exc
        return self.update(record, owner=owner)

    def all(self) -> list[LedgerRecord]:
        records = []
        for path, _ in fs.match(fs.join(self._dir, "*.json")):
            name = os.path.basename(path)[: -len(".json")]
            record = self.get(name)
            if record is not None:
                records.append(record)
        return records
