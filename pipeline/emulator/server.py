"""HTTP layer of the Gemini API emulator: routing, auth, uploads, faults, admin.

Speaks the REST protocol the official ``google-genai`` SDK uses (research note
gemini-batch-api.md §7): resumable uploads, Files, ``batchEmbedContents``,
``embedContent``, ``asyncBatchEmbedContent``, ``models.get`` and batch Operations, under any ``v1*``
version prefix. Admin endpoints under ``/_emulator/`` need no API key:
``GET /_emulator/stats``, ``GET|POST /_emulator/faults``, ``POST /_emulator/reset``,
``POST /_emulator/release`` (``{"jobs": [names]}`` or ``{}`` for all: ends the hold of
jobs created while ``hold_jobs`` was set, or moves it on with ``"hold": "RUNNING"``;
``"wait": true`` answers once the released jobs are processed).
"""
from __future__ import annotations

import base64
import copy
import hmac
import json
import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from pipeline.emulator.embedder import Embedder, pick
from pipeline.emulator.errors import ApiError, invalid_argument, not_found, permission_denied, resource_exhausted
from pipeline.emulator.faults import HOLD_STATES, FaultConfig, Faults, HttpFault
from pipeline.emulator.jobs import BatchService, json_values
from pipeline.emulator.state import FileRecord, Store, new_id
from transforms.limits import DEFAULT_CONFIG_DIR, limits_from_mapping, load_limits_dir, load_tokens_per_unit
from transforms.settings import ModelLimits

log = logging.getLogger(__name__)

CHUNK_GRANULARITY = 8 * 1024 * 1024
_V = r"(?P<v>v1[a-z0-9]*)"
_FILE_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_DEFAULT_PAGE = 10
_MAX_PAGE = 100


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    base_url: str  # scheme://host:port this client reached us at
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> object:
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise invalid_argument("Invalid JSON payload received.") from None


@dataclass
class Reply:
    code: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, obj: object, **headers: str) -> "Reply":
        return cls(body=json.dumps(obj).encode(), headers=dict(headers))


@dataclass
class _Upload:
    declared_size: int | None
    mime_type: str
    display_name: str
    file_id: str | None
    data: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern
    name: str
    handler: Callable[[Request], Reply]
    needs_key: bool = True


class EmulatorApp:
    """Protocol logic, independent of the socket server (one per EmulatorServer)."""

    def __init__(self, *, api_key: str | None, store: Store, embedder: Embedder,
                 batches: BatchService, faults: Faults, initial_faults: FaultConfig,
                 file_processing_seconds: float) -> None:
        self._api_key = api_key
        self.store = store
        self.embedder = embedder
        self.batches = batches
        self.faults = faults
        self._initial_faults = initial_faults
        self._file_processing_seconds = file_processing_seconds
        self._uploads: dict[str, _Upload] = {}
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.sync_billed_tokens = 0
        r = re.compile
        self._routes = [
            _Route("POST", r(rf"^/upload/{_V}/files$"), "files.upload", self._upload),
            _Route("GET", r(rf"^/(?:download/)?{_V}/files/(?P<id>[a-z0-9-]+):download$"),
                   "files.download", self._file_download),
            _Route("GET", r(rf"^/{_V}/files$"), "files.list", self._file_list),
            _Route("GET", r(rf"^/{_V}/files/(?P<id>[a-z0-9-]+)$"), "files.get", self._file_get),
            _Route("DELETE", r(rf"^/{_V}/files/(?P<id>[a-z0-9-]+)$"), "files.delete", self._file_delete),
            _Route("GET", r(rf"^/{_V}/models/(?P<model>[^/:]+)$"), "models.get", self._model_get),
            _Route("POST", r(rf"^/{_V}/models/(?P<model>[^/:]+):batchEmbedContents$"),
                   "models.batchEmbedContents", self._batch_embed),
            _Route("POST", r(rf"^/{_V}/models/(?P<model>[^/:]+):embedContent$"),
                   "models.embedContent", self._embed),
            _Route("POST", r(rf"^/{_V}/models/(?P<model>[^/:]+):asyncBatchEmbedContent$"),
                   "models.asyncBatchEmbedContent", self._batch_create),
            _Route("GET", r(rf"^/{_V}/batches$"), "batches.list", self._batch_list),
            _Route("GET", r(rf"^/{_V}/batches/(?P<id>[a-z0-9-]+)$"), "batches.get", self._batch_get),
            _Route("POST", r(rf"^/{_V}/batches/(?P<id>[a-z0-9-]+):cancel$"), "batches.cancel",
                   self._batch_cancel),
            _Route("DELETE", r(rf"^/{_V}/batches/(?P<id>[a-z0-9-]+)$"), "batches.delete",
                   self._batch_delete),
            _Route("GET", r(r"^/_emulator/stats$"), "admin.stats", self._admin_stats, False),
            _Route("GET", r(r"^/_emulator/faults$"), "admin.faults", self._admin_faults_get, False),
            _Route("POST", r(r"^/_emulator/faults$"), "admin.faults", self._admin_faults_set, False),
            _Route("POST", r(r"^/_emulator/reset$"), "admin.reset", self._admin_reset, False),
            _Route("POST", r(r"^/_emulator/release$"), "admin.release", self._admin_release, False),
        ]

    # -- dispatch --------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        route = self._match(req)
        name = route.name if route else "unknown"
        if name == "files.upload" and "upload_id" in req.query:
            name = "files.upload_session"  # the session URL: the upload id is the credential
        with self._lock:
            self.requests[name] += 1
        session = name == "files.upload_session"
        try:
            if route is None:
                raise not_found(f"Method not found: {req.method} {req.path}")
            if route.needs_key and not session:
                self._check_key(req)
            fault = None if not route.needs_key else self.faults.take_http_fault(req.method, req.path)
            if fault and not fault.after:
                raise _fault_error(fault)
            reply = route.handler(req)
            if fault:  # served, but the client never hears of it
                raise _fault_error(fault)
            return reply
        except ApiError as err:
            headers = {"X-Goog-Upload-Status": "final"} if session else {}
            return Reply(err.http_code, json.dumps(err.body()).encode(), headers=headers)

    def _match(self, req: Request) -> _Route | None:
        for route in self._routes:
            if route.method == req.method:
                m = route.pattern.match(req.path)
                if m:
                    req.params = {k: v for k, v in m.groupdict().items() if v is not None}
                    return route
        return None

    def _check_key(self, req: Request) -> None:
        given = req.headers.get("x-goog-api-key") or req.query.get("key")
        if not given:
            raise permission_denied(
                "Method doesn't allow unregistered callers (callers without established identity)."
                " Please use API Key or other form of API consumer identity to call this API."
            )
        if self._api_key is not None and not hmac.compare_digest(given.encode(), self._api_key.encode()):
            raise ApiError(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }])

    # -- files -----------------------------------------------------------------------
    def _upload(self, req: Request) -> Reply:
        if "upload_id" in req.query:
            return self._upload_session(req)
        if req.headers.get("x-goog-upload-protocol", "").lower() != "resumable" or \
                req.headers.get("x-goog-upload-command", "").lower() != "start":
            raise invalid_argument("Only the resumable upload protocol (command 'start') is supported.")
        body = req.json()
        meta = pick(body, "file") if isinstance(body, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        size = req.headers.get("x-goog-upload-header-content-length") or pick(meta, "size_bytes", "sizeBytes")
        mime = req.headers.get("x-goog-upload-header-content-type") or pick(meta, "mime_type", "mimeType")
        if not mime:
            raise invalid_argument("The upload needs a MIME type (X-Goog-Upload-Header-Content-Type).")
        file_id = None
        if pick(meta, "name"):
            file_id = str(meta["name"]).split("files/", 1)[-1]
            if not _FILE_ID.match(file_id):
                raise invalid_argument(f"Invalid file name: {meta['name']}")
            with self.store.lock:
                if file_id in self.store.files:
                    raise ApiError(409, f"File files/{file_id} already exists.", "ALREADY_EXISTS")
        try:
            declared = None if size is None else int(size)
        except ValueError:
            raise invalid_argument(f"Invalid upload size: {size!r}") from None
        upload_id = new_id(32)
        with self._lock:
            self._uploads[upload_id] = _Upload(declared, str(mime),
                                               str(pick(meta, "display_name", "displayName") or ""), file_id)
        url = f"{req.base_url}/upload/{req.params['v']}/files?upload_id={upload_id}&upload_protocol=resumable"
        return Reply.of({}, **{"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active",
                               "X-Goog-Upload-Chunk-Granularity": str(CHUNK_GRANULARITY)})

    def _upload_session(self, req: Request) -> Reply:
        upload_id = req.query["upload_id"]
        commands = {c.strip().lower() for c in req.headers.get("x-goog-upload-command", "").split(",")}
        with self._lock:
            up = self._uploads.get(upload_id)
            if up is None:
                raise not_found("Upload session not found or already finalized.")
            if "query" in commands:
                return Reply(body=b"", headers={"X-Goog-Upload-Status": "active",
                                                "X-Goog-Upload-Size-Received": str(len(up.data))})
            offset = req.headers.get("x-goog-upload-offset")
            if offset is not None and offset.strip() != str(len(up.data)):
                return Reply(400, json.dumps(invalid_argument(
                    f"Upload offset {offset} does not match the {len(up.data)} bytes received."
                ).body()).encode(), headers={"X-Goog-Upload-Status": "active"})
            if "upload" in commands:
                up.data += req.body
            if "finalize" not in commands:
                return Reply(body=b"", headers={"X-Goog-Upload-Status": "active"})
            del self._uploads[upload_id]
        if up.declared_size is not None and up.declared_size != len(up.data):
            raise invalid_argument(
                f"Upload finalized with {len(up.data)} bytes but {up.declared_size} were declared."
            )
        now = time.time()
        processing = self._file_processing_seconds if up.mime_type.startswith("video/") else 0.0
        rec = self.store.add_file(up.file_id or new_id(12), bytes(up.data), display_name=up.display_name,
                                  mime_type=up.mime_type, source="UPLOADED", now=now,
                                  active_at=now + processing)
        return Reply.of({"file": rec.resource(req.base_url, now)}, **{"X-Goog-Upload-Status": "final"})

    def _file_record(self, file_id: str) -> FileRecord:
        self.batches.settle_all()
        rec = self.store.files.get(file_id)
        if rec is None:
            raise permission_denied(
                f"You do not have permission to access the File files/{file_id} or it may not exist."
            )
        return rec

    def _file_get(self, req: Request) -> Reply:
        with self.store.lock:
            rec = self._file_record(req.params["id"])
            return Reply.of(rec.resource(req.base_url, time.time()))

    def _file_list(self, req: Request) -> Reply:
        self.batches.settle_all()
        now = time.time()
        with self.store.lock:
            files = sorted(self.store.files.values(), key=lambda f: (-f.create_time, f.id))
            page, token = _page(files, req.query)
            out: dict = {"files": [f.resource(req.base_url, now) for f in page]}
        if token:
            out["nextPageToken"] = token
        return Reply.of(out)

    def _file_delete(self, req: Request) -> Reply:
        with self.store.lock:
            self._file_record(req.params["id"])
            self.store.delete_file(req.params["id"])
        return Reply.of({})

    def _file_download(self, req: Request) -> Reply:
        with self.store.lock:
            rec = self._file_record(req.params["id"])
            if rec.source != "GENERATED":
                raise invalid_argument(
                    f"Only generated files can be downloaded; {rec.name} has source {rec.source}."
                )
            data = self.store.get_blob(rec.id)
        return Reply(body=data, content_type="application/octet-stream")

    # -- embeddings ------------------------------------------------------------------
    def _batch_embed(self, req: Request) -> Reply:
        model = req.params["model"]
        limits = self.embedder.limits_for(model, req.params["v"])
        body = req.json()
        requests = pick(body, "requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise invalid_argument("* BatchEmbedContentsRequest.requests: requests must not be empty.\n")
        if len(requests) > limits.batch_requests_per_sync_call:
            raise invalid_argument(
                "* BatchEmbedContentsRequest.requests: at most "
                f"{limits.batch_requests_per_sync_call} requests can be in one batch\n"
            )
        results = [self.embedder.embed(model, r) for r in requests]
        with self._lock:
            self.sync_billed_tokens += sum(r.token_count for r in results)
        return Reply.of({"embeddings": [{"values": json_values(r.values)} for r in results]})

    def _model_get(self, req: Request) -> Reply:
        """``models.get``: what a client checks before spending (the model exists, the key
        is accepted)."""
        limits = self.embedder.limits_for(req.params["model"], req.params["v"])
        return Reply.of({
            "name": f"models/{limits.model}",
            "displayName": limits.model,
            "inputTokenLimit": limits.text_tokens,
            "supportedGenerationMethods": ["embedContent", "batchEmbedContents",
                                           "asyncBatchEmbedContent"],
        })

    def _embed(self, req: Request) -> Reply:
        self.embedder.limits_for(req.params["model"], req.params["v"])
        result = self.embedder.embed(req.params["model"], req.json())
        with self._lock:
            self.sync_billed_tokens += result.token_count
        return Reply.of({"embedding": {"values": json_values(result.values)}})

    # -- batches ---------------------------------------------------------------------
    def _batch_create(self, req: Request) -> Reply:
        self.embedder.limits_for(req.params["model"], req.params["v"])
        job = self.batches.create(req.params["model"], req.json())
        return Reply.of(self.batches.operation(job))

    def _batch_get(self, req: Request) -> Reply:
        return Reply.of(self.batches.operation(self.batches.get(req.params["id"])))

    def _batch_list(self, req: Request) -> Reply:
        page, token = _page(self.batches.list(), req.query)
        out: dict = {"operations": [self.batches.operation(j, full=False) for j in page]}
        if token:
            out["nextPageToken"] = token
        return Reply.of(out)

    def _batch_cancel(self, req: Request) -> Reply:
        self.batches.cancel(req.params["id"])
        return Reply.of({})

    def _batch_delete(self, req: Request) -> Reply:
        self.batches.delete(req.params["id"])
        return Reply.of({})

    # -- admin -----------------------------------------------------------------------
    def stats(self) -> dict:
        self.batches.settle_all()
        now = time.time()
        with self.store.lock:
            jobs = sorted(self.store.jobs.values(), key=lambda j: (j.create_time, j.id))
            rows = []
            for job in jobs:
                state = job.state(now)
                rows.append({
                    "name": job.name, "display_name": job.display_name, "state": state,
                    "model": job.model, "request_file": job.input_file,
                    "line_count": job.request_count, "estimated_tokens": job.estimated_tokens,
                    "successful": job.successful if state == "SUCCEEDED" else 0,
                    "failed": job.failed if state == "SUCCEEDED" else 0,
                    "billed_tokens": job.billed_tokens if state == "SUCCEEDED" else 0,
                    "held": job.held,
                    "enqueued_jobs_at_create": job.enqueued_jobs_at_create,
                    "enqueued_tokens_at_create": job.enqueued_tokens_at_create,
                })
            files = len(self.store.files)
        with self._lock:
            requests, sync = dict(self.requests), self.sync_billed_tokens
        batch = sum(r["billed_tokens"] for r in rows)
        return {
            "jobs_created": self.batches.jobs_created,
            "jobs": rows,
            "files": files,
            "billed_tokens": batch + sync,
            "batch_billed_tokens": batch,
            "sync_billed_tokens": sync,
            "active_enqueued_tokens": self.batches.active_tokens(now),
            "requests": requests,
        }

    def reset(self) -> None:
        """Forget files, jobs, uploads and counters; faults back to the constructed ones."""
        self.store.clear()
        self.faults.replace(copy.deepcopy(self._initial_faults))
        self.batches.jobs_created = 0
        with self._lock:
            self._uploads.clear()
            self.requests.clear()
            self.sync_billed_tokens = 0

    def _admin_stats(self, req: Request) -> Reply:
        return Reply.of(self.stats())

    def _admin_faults_get(self, req: Request) -> Reply:
        return Reply.of(self.faults.snapshot())

    def _admin_faults_set(self, req: Request) -> Reply:
        try:
            return Reply.of(self.faults.update(req.json()))
        except (TypeError, ValueError) as exc:
            raise invalid_argument(f"Invalid fault settings: {exc}") from None

    def _admin_reset(self, req: Request) -> Reply:
        self.reset()
        return Reply.of({})

    def _admin_release(self, req: Request) -> Reply:
        body = req.json()
        body = body if isinstance(body, dict) else {}
        names = body.get("jobs")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise invalid_argument("release: 'jobs' must be a list of batch names")
        hold = body.get("hold")
        if hold not in (None, *HOLD_STATES):
            raise invalid_argument(f"release: 'hold' must be one of {', '.join(HOLD_STATES)} or null")
        released = self.batches.release(names, hold)
        idle = self.batches.wait_idle() if body.get("wait") else None
        return Reply.of({"released": released, "idle": idle})


def _fault_error(fault: HttpFault) -> ApiError:
    if fault.code == 429:
        return resource_exhausted("Resource has been exhausted (e.g. check quota).", fault.retry_delay_s)
    if fault.code == 503:
        return ApiError(503, "The service is currently unavailable.", "UNAVAILABLE")
    if fault.code == 500:
        return ApiError(500, "Internal error encountered.", "INTERNAL")
    return ApiError(fault.code, f"Injected fault (HTTP {fault.code}).")


def _page(items: list, query: Mapping[str, str]) -> tuple[list, str | None]:
    """One page of ``items`` and the opaque token of the next page (None at the end)."""
    try:
        size = int(query.get("pageSize") or query.get("page_size") or _DEFAULT_PAGE)
        token = query.get("pageToken") or query.get("page_token")
        start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("o:")) if token else 0
    except ValueError:
        raise invalid_argument("Invalid page size or page token.") from None
    size = max(1, min(size, _MAX_PAGE))
    end = start + size
    nxt = base64.urlsafe_b64encode(f"o:{end}".encode()).decode() if end < len(items) else None
    return items[start:end], nxt


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "embedpipe-gemini-emulator"
    timeout = 120  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        req = Request(self.command, split.path, query, self.headers, body, f"http://{host}")
        try:
            reply = self.server.app.handle(req)
        except Exception as exc:  # a bug must still answer like Google would
            log.exception("emulator: internal error on %s %s", self.command, split.path)
            err = ApiError(500, f"Internal error encountered: {type(exc).__name__}", "INTERNAL")
            reply = Reply(500, json.dumps(err.body()).encode())
        self.send_response(reply.code)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("emulator: " + format, *args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: EmulatorApp


class EmulatorServer:
    """The Gemini API emulator: an HTTP server in a background thread.

    ``limits_by_model`` maps model names to ``ModelLimits`` (or dicts of the same keys);
    by default the repository's ``configs/limits/*.yaml``. ``tokens_per_unit`` defaults
    to ``configs/pricing.yaml``. ``quota_tokens`` caps the tokens enqueued across active
    jobs (None: no quota). Timings are in seconds; 0 makes jobs finish at once.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        state_dir: str | Path | None = None,
        pending_seconds: float = 0.0,
        running_seconds: float = 0.0,
        faults: FaultConfig | dict | None = None,
        limits_by_model: Mapping[str, ModelLimits | dict] | None = None,
        quota_tokens: int | None = None,
        tokens_per_unit: Mapping[str, float] | None = None,
        file_processing_seconds: float = 0.0,
    ) -> None:
        self._host, self._port = host, port
        self._state_dir = state_dir
        if limits_by_model is None:
            limits = load_limits_dir(DEFAULT_CONFIG_DIR / "limits")
        else:
            limits = {name: v if isinstance(v, ModelLimits) else
                      limits_from_mapping(v, f"limits_by_model[{name!r}]")
                      for name, v in limits_by_model.items()}
        rates = dict(tokens_per_unit) if tokens_per_unit is not None else \
            load_tokens_per_unit(DEFAULT_CONFIG_DIR / "pricing.yaml")
        initial = faults if isinstance(faults, FaultConfig) else FaultConfig.from_dict(faults or {})
        self.faults = Faults(copy.deepcopy(initial))
        store = Store(state_dir)
        embedder = Embedder(limits, rates, store.resolve_file)
        batches = BatchService(store, embedder, self.faults, pending_seconds=pending_seconds,
                               running_seconds=running_seconds, quota_tokens=quota_tokens)
        self.app = EmulatorApp(api_key=api_key, store=store, embedder=embedder, batches=batches,
                               faults=self.faults, initial_faults=initial,
                               file_processing_seconds=file_processing_seconds)
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the API key
        return f"EmulatorServer(base_url={self.base_url!r}, state_dir={self._state_dir!r})"

    @property
    def base_url(self) -> str | None:
        if self._httpd is None:
            return None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Bind (port 0 picks a free port), serve in a daemon thread, return the base URL."""
        if self._httpd is not None:
            return self.base_url
        self._httpd = _HttpServer((self._host, self._port), _Handler)
        self._httpd.app = self.app
        self.app.batches.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="gemini-emulator",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        log.info("Gemini API emulator listening on %s", self.base_url)
        return self.base_url

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
        self.app.batches.stop()
        self._httpd = self._thread = None

    def stats(self) -> dict:
        return self.app.stats()

    def reset(self) -> None:
        self.app.reset()

    def hold_jobs(self, state: str | None = "PENDING") -> None:
        """Jobs created from now on stay ``state`` until released (None: stop holding)."""
        self.faults.update({"hold_jobs": state})

    def release_jobs(self, names: list[str] | None = None, hold: str | None = None) -> list[str]:
        """Release held jobs (all, or the named ones), or move their hold on to ``hold``;
        returns the released names."""
        return self.app.batches.release(names, hold)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every due job has been processed (see ``BatchService.wait_idle``)."""
        return self.app.batches.wait_idle(timeout)

    def __enter__(self) -> "EmulatorServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(host: str = "127.0.0.1", port: int = 8765, **kwargs) -> None:
    """Run the emulator in the foreground until interrupted (the ``embedpipe emulator`` CLI)."""
    server = EmulatorServer(host=host, port=port, **kwargs)
    url = server.start()
    print(f"Gemini API emulator listening on {url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
