"""Fault injection: what can go wrong with the real service, on demand and repeatably.

All faults are off by default. They are set at construction (``FaultConfig`` or a dict)
and at runtime through ``POST /_emulator/faults`` (a partial dict: given keys replace
the current values). Fractions are deterministic: decided by a keyed hash of the batch
name or line key with ``seed``, so a rerun meets the same faults.

``hold_jobs`` is the deterministic alternative to timing: jobs created while it is set
stay PENDING (or RUNNING) until a test releases them (``POST /_emulator/release``), so
no test has to win a race against a clock.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from dataclasses import dataclass, field


@dataclass
class HttpFault:
    """Answer the next ``count`` matching requests with an error instead of serving them.

    ``after=True`` serves the request first and then answers with the error: the
    "response lost" case that makes a non-idempotent create ambiguous.
    """

    count: int = 1
    code: int = 429  # 429 (with RetryInfo), 500, 503, ...
    method: str | None = None  # e.g. "POST"; None matches any
    path: str | None = None  # regex searched in the URL path; None matches any
    retry_delay_s: float = 30.0
    after: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return not self.path or re.search(self.path, path) is not None


HOLD_STATES = ("PENDING", "RUNNING")


@dataclass
class FaultConfig:
    http_errors: list[HttpFault] = field(default_factory=list)
    fail_next_jobs: int = 0  # the next N creates end FAILED (top-level error)
    expire_next_jobs: int = 0  # the next N creates end EXPIRED (no output)
    fail_job_fraction: float = 0.0
    expire_job_fraction: float = 0.0
    job_error_code: int = 13
    job_error_message: str = "Batch job failed with an internal error (injected fault)."
    line_error_fraction: float = 0.0  # share of keys answered with a per-line error
    line_error_keys: list[str] = field(default_factory=list)
    line_error_code: int = 13  # gRPC INTERNAL: retryable
    line_error_codes: dict[str, int] = field(default_factory=dict)  # per key, overrides the above
    line_error_message: str = "Internal error encountered (injected fault)."
    slow_job_seconds: float = 0.0  # extra running time for jobs created while set
    shuffle_output: bool = False  # write output lines in a (seeded) shuffled order
    hold_jobs: str | None = None  # PENDING | RUNNING: new jobs stay there until released
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> "FaultConfig":
        return cls().updated(data)

    def updated(self, patch: dict) -> "FaultConfig":
        """A copy with the keys of ``patch`` replaced; unknown keys are an error."""
        if not isinstance(patch, dict):
            raise ValueError("fault settings must be a JSON object")
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(patch) - names)
        if unknown:
            raise ValueError(f"unknown fault setting {unknown[0]!r} (known: {', '.join(sorted(names))})")
        values = dict(patch)
        if "http_errors" in values:
            values["http_errors"] = [
                e if isinstance(e, HttpFault) else HttpFault(**e) for e in values["http_errors"]
            ]
        if "line_error_keys" in values:
            values["line_error_keys"] = [str(k) for k in values["line_error_keys"]]
        if "line_error_codes" in values:
            values["line_error_codes"] = {str(k): int(c) for k, c in values["line_error_codes"].items()}
        if values.get("hold_jobs") not in (None, *HOLD_STATES):
            raise ValueError(f"hold_jobs must be one of {', '.join(HOLD_STATES)} or null, "
                             f"got {values['hold_jobs']!r}")
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class JobPlan:
    """How a new batch job will behave, fixed at create time."""

    outcome: str  # SUCCEEDED | FAILED | EXPIRED
    extra_running_seconds: float
    shuffle: bool
    error_code: int
    error_message: str
    hold: str | None = None  # PENDING | RUNNING until released


class Faults:
    """Thread-safe holder of the current ``FaultConfig`` and its counters."""

    def __init__(self, config: FaultConfig | dict | None = None) -> None:
        self._lock = threading.Lock()
        self._config = self._coerce(config)

    @staticmethod
    def _coerce(config: FaultConfig | dict | None) -> FaultConfig:
        if config is None:
            return FaultConfig()
        return config if isinstance(config, FaultConfig) else FaultConfig.from_dict(config)

    def replace(self, config: FaultConfig | dict | None) -> None:
        with self._lock:
            self._config = self._coerce(config)

    def update(self, patch: dict) -> dict:
        with self._lock:
            self._config = self._config.updated(patch)
            return self._config.to_dict()

    def snapshot(self) -> dict:
        with self._lock:
            return self._config.to_dict()

    def take_http_fault(self, method: str, path: str) -> HttpFault | None:
        """Consume one use of the first rule matching this request, if any."""
        with self._lock:
            for rule in self._config.http_errors:
                if rule.count > 0 and rule.matches(method, path):
                    rule.count -= 1
                    return dataclasses.replace(rule)
            return None

    def plan_job(self, batch_name: str) -> JobPlan:
        with self._lock:
            cfg = self._config
            outcome = "SUCCEEDED"
            if cfg.fail_next_jobs > 0:
                cfg.fail_next_jobs -= 1
                outcome = "FAILED"
            elif cfg.expire_next_jobs > 0:
                cfg.expire_next_jobs -= 1
                outcome = "EXPIRED"
            elif _unit(cfg.seed, "fail", batch_name) < cfg.fail_job_fraction:
                outcome = "FAILED"
            elif _unit(cfg.seed, "expire", batch_name) < cfg.expire_job_fraction:
                outcome = "EXPIRED"
            return JobPlan(outcome, cfg.slow_job_seconds, cfg.shuffle_output,
                           cfg.job_error_code, cfg.job_error_message, cfg.hold_jobs)

    def line_error(self, key: str) -> dict | None:
        """The injected per-line status for ``key``, or None to serve it normally."""
        with self._lock:
            cfg = self._config
            if key in cfg.line_error_codes:
                return {"code": cfg.line_error_codes[key], "message": cfg.line_error_message}
            if key in cfg.line_error_keys or _unit(cfg.seed, "line", key) < cfg.line_error_fraction:
                return {"code": cfg.line_error_code, "message": cfg.line_error_message}
            return None

    def shuffle_seed(self, batch_name: str) -> int:
        with self._lock:
            seed = self._config.seed
        return int(_unit(seed, "shuffle", batch_name) * 2**32)


def _unit(seed: int, salt: str, text: str) -> float:
    """Deterministic uniform number in [0, 1) from (seed, salt, text)."""
    digest = hashlib.blake2b(f"{seed}\x1f{salt}\x1f{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64
