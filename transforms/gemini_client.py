"""The one client path to the Gemini API (real service or emulator: only ``base_url`` differs).

Built on the official ``google-genai`` SDK with ``api_version="v1beta"`` pinned and the
SDK's own retries on (its defaults are none). What the SDK does not do for batch work is
done here:

* batch creation is not idempotent, so it is sent once with retries off; after an
  ambiguous failure (timeout, connection error, 5xx) the job is looked up by display
  name before creating again, and a 429 becomes ``QuotaExhausted(retry_after_s)``;
* ``batches.get`` drops ``batchStats`` and the job-level ``error``, so jobs are read with
  a raw GET into ``JobInfo``;
* uploads' data chunks and downloads are not retried by the SDK, so they are here;
* result lines are parsed defensively (``parse_result_line`` never raises).

The API key lives only inside the SDK client: it is never logged, repr'd, written to
disk or put into an exception message (messages are scrubbed as a second guard).
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import struct
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Iterator, Mapping, Sequence, TypeVar

import httpx
import numpy as np
import orjson
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

log = logging.getLogger(__name__)

API_VERSION = "v1beta"
MAX_SYNC_REQUESTS = 100
JOB_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")
ENDED_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})
DEFAULT_RETRY_AFTER_S = 60.0
_KEY_FALLBACKS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_AMBIGUOUS = (httpx.TimeoutException, httpx.TransportError)
_STATE_ALIASES = {"UNSPECIFIED": "PENDING", "QUEUED": "PENDING", "PAUSED": "PENDING",
                  "UPDATING": "RUNNING", "CANCELLING": "RUNNING",
                  "PARTIALLY_SUCCEEDED": "SUCCEEDED"}
_RETRYABLE_STATUS = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED",
                               "ABORTED", "UNKNOWN", "CANCELLED", "DATA_LOSS"})
_PERMANENT_STATUS = frozenset({"INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED",
                               "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION",
                               "OUT_OF_RANGE", "UNIMPLEMENTED"})
_RETRYABLE_GRPC = frozenset({1, 2, 4, 8, 10, 13, 14, 15})
_T = TypeVar("_T")

# The SDK warns on every create_embeddings call; one line per job is noise in run logs.
warnings.filterwarnings("ignore", message=r"batches\.create_embeddings\(\) is experimental")


# -- errors ------------------------------------------------------------------------------
class GeminiClientError(RuntimeError):
    """Base of every error this module raises."""


class ApiKeyMissing(GeminiClientError):
    """No API key in the configured environment variable (or its fallbacks)."""


class ApiCallError(GeminiClientError):
    """An API call failed; ``retryable`` says whether trying again later can help."""

    def __init__(self, operation: str, code: int | None, status: str | None, message: str) -> None:
        self.operation = operation
        self.code = code
        self.status = status
        self.retryable = classify_error(code, status)
        super().__init__(f"{operation} failed: HTTP {code} {status or ''}: {message}".replace("  ", " "))


class QuotaExhausted(ApiCallError):
    """429 RESOURCE_EXHAUSTED (e.g. the enqueued-token quota); retry after ``retry_after_s``."""

    def __init__(self, operation: str, message: str, retry_after_s: float) -> None:
        super().__init__(operation, 429, "RESOURCE_EXHAUSTED", message)
        self.retry_after_s = retry_after_s


class JobWaitTimeout(GeminiClientError):
    """The job did not end before the wait's deadline (it keeps running server-side)."""

    def __init__(self, name: str, state: str | None, waited_s: float) -> None:
        self.name, self.state = name, state
        super().__init__(f"batch job {name} still {state or 'unknown'} after {waited_s:.0f} s")


class FileProcessingFailed(GeminiClientError):
    """An uploaded media file ended FAILED or stayed PROCESSING past the timeout."""


def classify_error(code: int | str | None, status: str | None) -> bool:
    """Whether an error is worth retrying.

    ``status`` (canonical name) wins when known; else ``code`` is read as HTTP when
    >= 100 and as gRPC otherwise. 429/RESOURCE_EXHAUSTED, 408, 5xx (not 501),
    UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED are retryable; INVALID_ARGUMENT,
    permission/auth, NOT_FOUND and other 4xx are permanent; unknown errors are
    retryable (callers bound their attempts).
    """
    name = (status or "").upper()
    if name in _RETRYABLE_STATUS:
        return True
    if name in _PERMANENT_STATUS:
        return False
    try:
        number = int(code) if code is not None else None
    except (TypeError, ValueError):
        number = None
    if number is None:
        return True
    if number >= 100:
        return number in (408, 429) or (number >= 500 and number != 501)
    return number in _RETRYABLE_GRPC


# -- API key -----------------------------------------------------------------------------
def api_key_from_env(env_name: str = "GEMINI_API_KEY") -> str:
    """The API key from ``env_name``, else GEMINI_API_KEY, else GOOGLE_API_KEY."""
    for name in (env_name, *[n for n in _KEY_FALLBACKS if n != env_name]):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    raise ApiKeyMissing(
        f"no Gemini API key: set the environment variable {env_name} "
        f"(fallbacks checked: {', '.join(_KEY_FALLBACKS)})"
    )


def make_client(base_url: str | None, api_key: str, *, timeout_s: float = 60) -> genai.Client:
    """An SDK client pinned to v1beta, with the SDK's own retries off: BatchClient retries
    every idempotent call itself, once (not nested inside the SDK's), with each retry
    logged with the endpoint and the cause."""
    if not api_key:
        raise ApiKeyMissing("an API key is required (see api_key_from_env)")
    options = types.HttpOptions(
        base_url=base_url,
        api_version=API_VERSION,
        timeout=int(timeout_s * 1000),  # the SDK takes milliseconds
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=api_key, http_options=options)


# -- value types -------------------------------------------------------------------------
@dataclass(frozen=True)
class FileRef:
    """An uploaded file: ``name`` (files/ID) for API calls, ``uri`` for ``file_data`` parts."""

    name: str
    uri: str
    mime_type: str | None = None


@dataclass(frozen=True)
class JobInfo:
    """A batch job as read from the raw Operation (which keeps what the SDK drops)."""

    name: str
    display_name: str | None
    state: str  # one of JOB_STATES
    model: str | None = None
    output_file: str | None = None
    stats: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    error_code: int | None = None
    create_time: str | None = None
    end_time: str | None = None
    inlined_responses: tuple = ()

    @property
    def done(self) -> bool:
        return self.state in ENDED_STATES

    @classmethod
    def from_operation(cls, op: Mapping) -> "JobInfo":
        meta = op.get("metadata") or {}
        response = op.get("response") or {}
        output = meta.get("output") or {}
        error = op.get("error") or meta.get("error") or None
        output_file = (output.get("responsesFile") or output.get("responses_file")
                       or response.get("responsesFile") or response.get("responses_file"))
        inlined = ((output.get("inlinedResponses") or {}).get("inlinedResponses")
                   or (response.get("inlinedResponses") or {}).get("inlinedResponses") or ())
        state = normalise_state(meta.get("state"))
        if op.get("done") and state not in ENDED_STATES:  # stale metadata.state seen live
            state = "FAILED" if error else "SUCCEEDED" if (output_file or inlined) else state
        stats = {_snake(k): int(v) for k, v in (meta.get("batchStats") or {}).items()
                 if str(v).lstrip("-").isdigit()}
        return cls(
            name=str(op.get("name") or meta.get("name") or ""),
            display_name=meta.get("displayName"),
            state=state,
            model=meta.get("model"),
            output_file=output_file,
            stats=stats,
            error=(str(error.get("message") or error) if isinstance(error, dict) else error),
            error_code=_int_or_none(error.get("code")) if isinstance(error, dict) else None,
            create_time=meta.get("createTime"),
            end_time=meta.get("endTime"),
            inlined_responses=tuple(inlined),
        )


def normalise_state(raw: object) -> str:
    """``BATCH_STATE_X`` / ``JOB_STATE_X`` / enum → one of JOB_STATES (unknown → RUNNING)."""
    text = str(getattr(raw, "name", raw) or "").upper()
    for prefix in ("BATCH_STATE_", "JOB_STATE_"):
        text = text.removeprefix(prefix)
    text = _STATE_ALIASES.get(text, text)
    return text if text in JOB_STATES else ("PENDING" if not text else "RUNNING")


@dataclass(frozen=True)
class ResultLine:
    """One parsed output line. ``values`` is None exactly when the line is an error."""

    key: str | None
    values: np.ndarray | None
    token_count: int | None
    error_code: int | None
    error_message: str | None
    retryable: bool

    @property
    def ok(self) -> bool:
        return self.values is not None


def parse_result_line(line: str | bytes) -> ResultLine:
    """Parse a batch output line defensively; malformed input gives an error result.

    Accepts the error at top level or under ``response.error`` with a gRPC or HTTP
    ``code``, values under ``response.embedding`` (or ``embeddings[0]``), and the token
    count as ``tokenCount`` or ``usageMetadata.promptTokenCount``. A line with neither an
    embedding nor an error is a retryable error (the service dropped something).
    """
    (parsed,) = parse_result_lines((line,))
    return parsed


RESULT_BLOCK_LINES = 256


def parse_result_lines(lines: Iterable[str | bytes]) -> Iterator[ResultLine]:
    """``parse_result_line`` of each line, in order.

    Result files are the biggest thing a run reads (~10 KB of JSON per 768-d vector), so
    a line goes through orjson first, and its values are packed as C doubles by
    ``struct``, which takes ints and floats and refuses strings, None and containers
    (twice as fast as ``array("d")`` or ``np.asarray`` on a list). Whatever that fast path
    cannot vouch for (errors, NaN literals, integers orjson reads as floats, values a
    boolean could hide in) is parsed again the exact stdlib way, so every line gets the
    same outcome. The checks on the values run once per block of lines, on all of the
    block's values at once: per line, numpy's call overhead cost more than the check.
    """
    block: list[str | bytes] = []
    for line in lines:
        block.append(line)
        if len(block) == RESULT_BLOCK_LINES:
            yield from _parse_block(block)
            block = []
    yield from _parse_block(block)


def _parse_block(lines: list[str | bytes]) -> Iterator[ResultLine]:
    fast = [_fast_fields(line) for line in lines]
    numbers = [fields[1] for fields in fast if fields is not None and fields[1] is not None]
    if numbers:
        # via float64, as np.asarray(raw, float32) converts; one check for every row
        values = np.frombuffer(b"".join(numbers), np.float64).astype(np.float32)
        ends = (np.cumsum([len(row) for row in numbers]) // 8).tolist()
        unsure = np.logical_or.reduceat(_suspect(values), [0, *ends[:-1]]).tolist()
    row = 0
    for line, fields in zip(lines, fast):
        if fields is None:
            yield _exact(line)
        elif fields[1] is None:
            yield ResultLine(*fields)
        else:
            if unsure[row]:
                yield _exact(line)
            else:
                end = ends[row]
                yield ResultLine(fields[0], values[end - len(fields[1]) // 8:end], *fields[2:])
            row += 1


class _Unsure(Exception):
    """The fast path cannot vouch for this line: parse it again the exact way."""


def _fast_fields(line: str | bytes) -> tuple | None:
    """``ResultLine`` fields by orjson, with the values still unchecked, packed as C
    doubles; None when the line must be parsed the exact way."""
    try:
        obj = orjson.loads(line)
    except (orjson.JSONDecodeError, TypeError):
        return None
    try:
        return _interpret(obj, fast=True)
    except _Unsure:
        return None


def _exact(line: str | bytes) -> ResultLine:
    """The stdlib parse. A line nested past the recursion limit, or holding a number no
    float can hold (a 400-digit integer, a token count of 1e400), is a malformed line of
    its key, not an exception: one hostile line must not stop the collect."""
    try:
        obj = json.loads(line)
    except (TypeError, ValueError, RecursionError) as exc:
        return ResultLine(*_bad_line(None, f"malformed result line ({type(exc).__name__})"))
    try:
        return ResultLine(*_interpret(obj, fast=False))
    except (OverflowError, RecursionError) as exc:
        key = obj.get("key") if isinstance(obj, dict) else None
        return ResultLine(*_bad_line(
            None if key is None else str(key),
            f"malformed result line ({type(exc).__name__}: a number out of range)"))


def _suspect(values: np.ndarray) -> np.ndarray:
    """Items the fast conversion cannot vouch for: ``struct`` reads a boolean as 0
    or 1, orjson makes a float of an integer beyond 64 bits, and NaN or infinity is an
    error the exact path words. Any 0, ±1, |value| >= 2**63 or non-finite value sends
    its line to the exact path."""
    magnitude = np.abs(values)
    return (magnitude == 0) | (magnitude == 1) | ~(magnitude < 2.0**63)


def _interpret(obj: object, fast: bool) -> tuple:
    if not isinstance(obj, dict):
        return _bad_line(None, "malformed result line (not a JSON object)")
    raw_key = obj.get("key")
    if fast and type(raw_key) is float:
        raise _Unsure  # orjson reads integers beyond 64 bits as floats
    key = None if raw_key is None else str(raw_key)
    response = obj.get("response") if isinstance(obj.get("response"), dict) else {}
    error = obj.get("error") or response.get("error")
    if error:
        if fast:
            raise _Unsure  # rare: read every field of an error exactly
        if isinstance(error, dict):
            code = _int_or_none(error.get("code"))
            status = error.get("status") if isinstance(error.get("status"), str) else None
            message = str(error.get("message") or status or "unspecified error")
        else:
            code, status, message = None, None, str(error)
        return (key, None, None, code, message, classify_error(code, status))
    try:
        values = _embedding_values(response if response else obj, fast)
    except ValueError as exc:
        return _bad_line(key, str(exc))
    if values is None:
        return _bad_line(key, "result line has neither an embedding nor an error")
    tokens = _token_count(response, fast) or _token_count(obj, fast)
    return (key, values, tokens, None, None, False)


def _bad_line(key: str | None, message: str) -> tuple:
    return (key, None, None, None, message, True)


def _embedding_values(obj: Mapping, fast: bool = False) -> np.ndarray | bytes | None:
    """The values as float32 (exact path) or packed as C doubles the caller checks
    (fast path: ints and floats only; strings, None and containers are refused)."""
    emb = obj.get("embedding")
    if not isinstance(emb, dict) and isinstance(obj.get("embeddings"), list) and obj["embeddings"]:
        emb = obj["embeddings"][0]
    if not isinstance(emb, dict) or emb.get("values") is None:
        return None
    raw = emb["values"]
    if fast:
        if not isinstance(raw, list) or not raw:
            raise _Unsure
        try:
            return struct.pack(f"{len(raw)}d", *raw)
        except struct.error:
            raise _Unsure from None
    if not isinstance(raw, list) or not raw or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        raise ValueError("embedding values are not a non-empty list of numbers")
    values = np.asarray(raw, dtype=np.float32)
    if not np.isfinite(values).all():
        raise ValueError("embedding values contain NaN or infinity")
    return values


def _token_count(obj: Mapping, fast: bool = False) -> int | None:
    direct = _count(obj.get("tokenCount", obj.get("token_count")), fast)
    if direct is not None:
        return direct
    usage = obj.get("usageMetadata") or obj.get("usage_metadata")
    if isinstance(usage, dict):
        for name in ("promptTokenCount", "prompt_token_count", "totalTokenCount", "total_token_count"):
            found = _count(usage.get(name), fast)
            if found is not None:
                return found
    return None


def _count(value: object, fast: bool) -> int | None:
    if fast and type(value) is float:
        raise _Unsure  # orjson reads integers beyond 64 bits as floats
    return _int_or_none(value)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _retry_after_s(exc: genai_errors.APIError) -> float:
    """``RetryInfo.retryDelay`` ("30s", "1.5s") from a 429 body, else Retry-After, else 60 s."""
    body = exc.details if isinstance(exc.details, dict) else {}
    for detail in ((body.get("error") or {}).get("details") or []):
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return float(delay[:-1])
                except ValueError:
                    pass
            if isinstance(delay, dict):
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
    header = getattr(getattr(exc, "response", None), "headers", None)
    if header is not None:
        try:
            return float(header.get("retry-after"))
        except (TypeError, ValueError):
            pass
    return DEFAULT_RETRY_AFTER_S


# -- the client --------------------------------------------------------------------------
class BatchClient:
    """Files, batch embedding jobs and sync embeddings over one SDK client."""

    def __init__(self, client: genai.Client, *, retry_attempts: int = 6,
                 initial_delay_s: float = 2.0, max_delay_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._attempts = max(1, retry_attempts)
        self._initial_delay = initial_delay_s
        self._max_delay = max_delay_s
        self._sleep = sleep
        self._clock = clock
        # Kept only to scrub error messages; never formatted anywhere itself.
        self._secret = getattr(client._api_client, "api_key", None) or None
        self._base_url = client._api_client._http_options.base_url

    @classmethod
    def connect(cls, base_url: str | None, api_key: str, *, timeout_s: float = 60,
                retry_attempts: int = 6, initial_delay_s: float = 2.0,
                max_delay_s: float = 60.0) -> "BatchClient":
        client = make_client(base_url, api_key, timeout_s=timeout_s)
        return cls(client, retry_attempts=retry_attempts, initial_delay_s=initial_delay_s,
                   max_delay_s=max_delay_s)

    def __repr__(self) -> str:
        return f"BatchClient(base_url={self._base_url!r})"

    def __reduce__(self):
        # Pickling would write the key to disk (e.g. a Beam DoFn): build clients in setup().
        raise TypeError("BatchClient holds credentials and cannot be pickled; create it on the worker")

    # -- helpers -------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]") if self._secret else text

    def _error(self, operation: str, exc: Exception) -> GeminiClientError:
        if isinstance(exc, genai_errors.APIError):
            message = self._scrub(str(exc.message or exc.status or "error"))
            if exc.code == 429:
                return QuotaExhausted(operation, message, _retry_after_s(exc))
            return ApiCallError(operation, exc.code, exc.status, message)
        return ApiCallError(operation, None, "UNAVAILABLE", self._scrub(f"{type(exc).__name__}: {exc}"))

    def _backoff(self, attempt: int) -> float:
        return min(self._max_delay, self._initial_delay * 2 ** attempt) * random.uniform(0.5, 1.0)

    def _retrying(self, operation: str, call: Callable[[], _T]) -> _T:
        """Run an idempotent call, retrying transient errors (408/429/5xx, connection
        errors, timeouts) with backoff; raises ApiCallError otherwise or at the end."""
        for attempt in range(self._attempts):
            try:
                return call()
            except (genai_errors.APIError, *_AMBIGUOUS) as exc:
                err = self._error(operation, exc)
                if not isinstance(err, ApiCallError) or not err.retryable or attempt + 1 == self._attempts:
                    raise err from None
                delay = self._backoff(attempt)
                log.warning("%s at %s: transient %s %s (%s); retrying in %.1fs (%d/%d)", operation,
                            self._base_url, type(exc).__name__, err.status or "",
                            self._scrub(str(exc))[:200], delay, attempt + 1, self._attempts)
                self._sleep(delay)
        raise AssertionError("unreachable")

    @property
    def base_url(self) -> str:
        return self._base_url

    def check_model(self, model: str) -> None:
        """One ``models.get``, not retried: proves the endpoint answers, accepts the key
        and serves ``model`` before any work is done. Raises ApiCallError (HTTP errors) or
        the transport error itself (connection refused, DNS, timeout)."""
        try:
            self._client.models.get(model=model)
        except genai_errors.APIError as exc:
            raise self._error("models.get", exc) from None

    # -- files ---------------------------------------------------------------------
    def upload_jsonl(self, local_path: str | os.PathLike, display_name: str) -> str:
        """Upload a request file (mime ``jsonl``, as Google's docs do); returns ``files/ID``."""
        uploaded = self._retrying("upload request file", lambda: self._client.files.upload(
            file=os.fspath(local_path), config={"mime_type": "jsonl", "display_name": display_name}))
        log.info("uploaded %s as %s", Path(local_path).name, uploaded.name)
        return uploaded.name

    def upload_media(self, local_path: str | os.PathLike, mime_type: str, display_name: str, *,
                     poll_s: float = 1.0, timeout_s: float = 600.0) -> FileRef:
        """Upload a media file and wait until it is ACTIVE (videos are PROCESSING first)."""
        uploaded = self._retrying("upload media file", lambda: self._client.files.upload(
            file=os.fspath(local_path), config={"mime_type": mime_type, "display_name": display_name}))
        start = self._clock()
        while normalise_file_state(uploaded.state) == "PROCESSING":
            if self._clock() - start > timeout_s:
                raise FileProcessingFailed(f"{uploaded.name} still PROCESSING after {timeout_s:.0f} s")
            self._sleep(poll_s)
            name = uploaded.name
            uploaded = self._retrying("get file", lambda: self._client.files.get(name=name))
        if normalise_file_state(uploaded.state) != "ACTIVE":
            reason = getattr(uploaded.error, "message", None) or "no reason given"
            raise FileProcessingFailed(f"{uploaded.name} ended {uploaded.state}: {self._scrub(reason)}")
        return FileRef(uploaded.name, uploaded.uri, uploaded.mime_type)

    def download_to(self, file_name: str, open_sink: Callable[[], ContextManager]) -> None:
        """Stream a generated file into a writable sink, chunk by chunk (the SDK never holds
        the file). ``open_sink`` gives a fresh sink per attempt, so a download retried
        after a transient error starts over instead of appending to a torn copy."""

        def attempt() -> None:
            with open_sink() as sink:
                self._client.files.download(file=file_name, destination=sink)

        self._retrying("download results", attempt)

    def download_lines(self, file_name: str) -> Iterator[str]:
        """Stream the lines of a generated file (via a temp file: memory stays bounded)."""
        with tempfile.TemporaryDirectory(prefix="embedpipe-dl-") as tmp:
            path = os.path.join(tmp, "output.jsonl")
            self.download_to(file_name, lambda: open(path, "wb"))
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if line:
                        yield line

    def delete_file(self, name: str) -> None:
        """Delete a file; already gone (403/404) counts as done."""
        try:
            self._retrying("delete file", lambda: self._client.files.delete(name=name))
        except ApiCallError as exc:
            if exc.code in (403, 404):
                log.debug("delete %s: already gone (%s)", name, exc.code)
                return
            raise

    # -- batch jobs ----------------------------------------------------------------
    def create_embeddings_job(self, model: str, file_name: str, display_name: str) -> JobInfo:
        """Create a batch embedding job exactly once per ``display_name``.

        The create is sent with retries off (it is not idempotent). After an ambiguous
        failure (timeout, connection error, 5xx) the job may exist anyway, so it is
        looked up by ``display_name`` (which must be unique per request file) before
        trying again. A 429 raises ``QuotaExhausted`` for the caller to wait out.
        """
        last: Exception | None = None
        for attempt in range(self._attempts):
            try:
                job = self._client.batches.create_embeddings(
                    model=model, src={"file_name": file_name},
                    config={"display_name": display_name},
                )
                info = JobInfo(name=job.name, display_name=job.display_name or display_name,
                               state=normalise_state(job.state), model=job.model)
                log.info("created batch job %s (%s)", info.name, display_name)
                return info
            except genai_errors.APIError as exc:
                err = self._error("create batch job", exc)
                if isinstance(err, QuotaExhausted) or not (exc.code >= 500 or exc.code == 408):
                    raise err from None
                last = err
            except _AMBIGUOUS as exc:
                last = self._error("create batch job", exc)
            log.warning("create of %s ambiguous (%s); looking it up by display name",
                        display_name, last)
            found = self.find_job_by_display_name(display_name)
            if found is not None:
                log.info("found existing batch job %s for %s; not creating another",
                         found.name, display_name)
                return found
            if attempt + 1 < self._attempts:
                self._sleep(self._backoff(attempt))
        raise last

    def find_job_by_display_name(self, display_name: str) -> JobInfo | None:
        """The newest job with this display name, or None."""
        matches = self._retrying("list batch jobs", lambda: [
            j for j in self._client.batches.list(config={"page_size": 100})
            if j.display_name == display_name])
        if not matches:
            return None
        newest = max(matches, key=lambda j: (j.create_time is not None, j.create_time or 0))
        return self.get_job(newest.name)

    def get_job(self, name: str) -> JobInfo:
        """Read a job with a raw GET (keeps ``batchStats`` and the job-level ``error``)."""
        if not re.fullmatch(r"batches/[^/]+", name):
            raise ValueError(f"invalid batch job name {name!r} (expected 'batches/ID')")
        response = self._retrying("get batch job",
                                  lambda: self._client._api_client.request("get", name, {}))
        return JobInfo.from_operation(json.loads(response.body or "{}"))

    def wait_for_job(self, name: str, poll_s: float = 30.0, max_poll_s: float = 300.0,
                     deadline_s: float | None = None) -> JobInfo:
        """Poll until the job ends (exponential backoff x1.5 with +-20 % jitter).

        Transient read errors are logged and polling goes on; ``deadline_s`` bounds the
        whole wait (``JobWaitTimeout``). A SUCCEEDED job whose output is not visible yet
        (a race seen on the real service) is polled a few more times.
        """
        start = self._clock()
        delay = poll_s
        info: JobInfo | None = None
        early_success_polls = 0
        while True:
            try:
                info = self.get_job(name)
            except ApiCallError as exc:
                if not exc.retryable:
                    raise
                log.warning("polling %s: %s", name, exc)
            if info is not None and info.done:
                output_missing = (info.state == "SUCCEEDED" and not info.output_file
                                  and not info.inlined_responses)
                if not output_missing or early_success_polls >= 5:
                    return info
                early_success_polls += 1
            elapsed = self._clock() - start
            if deadline_s is not None and elapsed >= deadline_s:
                raise JobWaitTimeout(name, info.state if info else None, elapsed)
            pause = delay * random.uniform(0.8, 1.2)
            if deadline_s is not None:
                pause = min(pause, max(0.0, deadline_s - elapsed))
            self._sleep(pause)
            delay = min(max_poll_s, delay * 1.5)

    def cancel_job(self, name: str) -> None:
        self._retrying("cancel batch job", lambda: self._client.batches.cancel(name=name))
        log.info("cancelled batch job %s", name)

    # -- synchronous embeddings (queries) ------------------------------------------
    def embed_sync(self, model: str, contents: Sequence[Sequence[Mapping]],
                   dimensionality: int | None = None, task_type: str | None = None) -> np.ndarray:
        """One vector per item of ``contents`` (each a list of REST Part dicts).

        Items are sent as ``Content`` objects so gemini-embedding-2 does not fold them
        into one vector; at most 100 per call. ``task_type`` is gemini-embedding-001's
        ``taskType`` (Embedding 2 takes the task in the text). Returns float32
        ``(len(contents), D)``.
        """
        config = types.EmbedContentConfig(output_dimensionality=dimensionality, task_type=task_type)
        rows: list[list[float]] = []
        for start in range(0, len(contents), MAX_SYNC_REQUESTS):
            batch = [types.Content.model_validate({"parts": list(parts)})
                     for parts in contents[start:start + MAX_SYNC_REQUESTS]]
            response = self._retrying("embed", lambda: self._client.models.embed_content(
                model=model, contents=batch, config=config))
            embeddings = response.embeddings or []
            if len(embeddings) != len(batch):
                raise GeminiClientError(
                    f"embed returned {len(embeddings)} embeddings for {len(batch)} inputs"
                )
            rows.extend(e.values or [] for e in embeddings)
        if not rows:
            return np.zeros((0, dimensionality or 0), dtype=np.float32)
        return np.asarray(rows, dtype=np.float32)


def normalise_file_state(state: object) -> str:
    """``FileState.ACTIVE`` / ``"ACTIVE"`` → ``"ACTIVE"``."""
    return str(getattr(state, "value", state) or "STATE_UNSPECIFIED").upper()


__all__ = [
    "API_VERSION", "ApiCallError", "ApiKeyMissing", "BatchClient", "ENDED_STATES",
    "FileProcessingFailed", "FileRef", "GeminiClientError", "JOB_STATES", "JobInfo",
    "JobWaitTimeout", "QuotaExhausted", "ResultLine", "api_key_from_env", "classify_error",
    "make_client", "normalise_state", "parse_result_line", "parse_result_lines",
]
