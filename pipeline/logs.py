"""The run log on stderr: human text (default) or JSON lines for log shippers
(``embedpipe --log-format json ...`` or ``EMBEDPIPE_LOG_FORMAT=json``).

In JSON mode every line embedpipe writes to stderr is one JSON object
``{"ts", "level", "logger", "message"}`` (plus ``"exc"`` for a logged traceback): Python
``logging`` records (embedpipe's, Beam's, the SDKs') through a JSON formatter, and the
plain progress, warning and error lines (``[embedpipe] ...``, ``embedpipe: ...``) through a
stderr wrapper that turns each line into an object. stdout (results, ``status`` JSON) is
never changed.

Secrets are redacted in both modes: the API key read from the environment is registered
(``register_secret``) and replaced by ``[redacted]`` wherever it would appear, as is
anything shaped like a Google API key.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import re
import sys
import threading

FORMATS = ("text", "json")
ENV = "EMBEDPIPE_LOG_FORMAT"
_GOOGLE_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{35}")
_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Never let ``value`` reach the log (keys of fewer than 8 characters are not secrets
    worth a false positive on every short word)."""
    if value and len(value) >= 8:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "[redacted]")
    return _GOOGLE_KEY.sub("[redacted]", text)


def _record(level: str, logger: str, message: str, **extra) -> str:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    return json.dumps({"ts": now, "level": level, "logger": logger, "message": redact(message), **extra})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {"exc": redact(self.formatException(record.exc_info))} if record.exc_info else {}
        return _record(record.levelname, record.name, record.getMessage(), **extra)


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        return True


def line_level(line: str) -> str:
    """The level of a plain stderr line, from embedpipe's prefixes."""
    if line.startswith("embedpipe: warning:"):
        return "WARNING"
    if line.startswith("embedpipe: "):
        return "ERROR"
    return "INFO"


class JsonLines(io.TextIOBase):
    """A stderr replacement that writes every complete line as one JSON object."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream
        self._buffer = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                if line.strip():
                    self._stream.write(_record(line_level(line), "embedpipe", line.rstrip()) + "\n")
            self._stream.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._buffer.strip():
                self._stream.write(_record(line_level(self._buffer), "embedpipe", self._buffer.rstrip()) + "\n")
            self._buffer = ""
            self._stream.flush()

    def fileno(self) -> int:  # child processes that inherit stderr write to the real one
        return self._stream.fileno()


def log_format(flag: str | None) -> str:
    """The format asked for: the flag, else $EMBEDPIPE_LOG_FORMAT, else text."""
    value = (flag or os.environ.get(ENV) or "text").lower()
    if value not in FORMATS:
        raise ValueError(f"{ENV}: {value!r} is not a log format (fix: text or json)")
    return value


def configure(fmt: str, verbose: bool) -> None:
    """Set up logging (and, in JSON mode, stderr) for this process."""
    level = logging.INFO if verbose else logging.WARNING
    root = logging.getLogger()
    if fmt == "json":
        stream = sys.stderr._stream if isinstance(sys.stderr, JsonLines) else sys.stderr
        sys.stderr = JsonLines(stream)
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(level)
    else:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())
