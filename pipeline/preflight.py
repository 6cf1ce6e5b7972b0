"""Checks made before any work: a wrong flag, output, source, key or endpoint fails in
seconds with exit 2 and a message naming the key and the fix — not after listing and
chunking a corpus (minutes on Dataflow) or eight minutes of retries.

Each check is cheap (one request at most, no retries, short timeouts) and imports what it
needs only when it runs, so a config error costs no Beam or SDK start-up.
"""
from __future__ import annotations

import difflib
import glob
import os
import sys

from pipeline.config import ConfigError, Settings

CHECK_TIMEOUT_S = 10.0
EMBEDPIPE_FLAGS = ("--config", "--sources", "--output", "--set", "--run", "--strict", "--check",
                   "--json", "--image", "--file", "--verbose", "--log-format")
# Runners whose options live in their own module (registered with Beam when imported).
_RUNNER_OPTION_MODULES = {"DaskRunner": "apache_beam.runners.dask.dask_runner"}


def warn(message: str) -> None:
    print(f"embedpipe: warning: {message}", file=sys.stderr, flush=True)


# -- Beam options ------------------------------------------------------------------------
def _beam_parser(runner: str):
    import importlib

    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    module = _RUNNER_OPTION_MODULES.get(runner.rsplit(".", 1)[-1])
    if module:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # the runner itself will say what is missing
    class _Parser(_BeamArgumentParser):
        def error(self, message):  # argparse would print usage and exit
            raise ConfigError(f"Beam option: {message} (fix: --name=value)")

    parser = _Parser(allow_abbrev=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 - Beam's own way to list its options
    return parser


def check_beam_options(settings: Settings, command_line: list[str]) -> None:
    """Refuse options no one recognises (``--ouput=/x`` would otherwise go to Beam and the
    run would write somewhere else), with a did-you-mean hint."""
    config_args = list(settings.config.beam_options)
    if not config_args and not command_line:
        return
    parser = _beam_parser(settings.config.runner)
    known = [opt for action in parser._actions for opt in action.option_strings]  # noqa: SLF001
    for where, args in (("beam_options", config_args), ("command line", command_line)):
        _, unknown = parser.parse_known_args(args)
        for flag in (a.split("=", 1)[0] for a in unknown if a.startswith("-")):
            close = difflib.get_close_matches(flag, list(EMBEDPIPE_FLAGS) + known, n=1, cutoff=0.75)
            hint = f"did you mean {close[0]}?" if close else "see `embedpipe run --help` and Beam's pipeline options"
            key = "beam_options" if where == "beam_options" else flag
            raise ConfigError(f"{key}: unknown option {flag} (neither embedpipe's nor Beam's; {hint})")
        stray = [a for a in unknown if not a.startswith("-")]
        if stray:
            raise ConfigError(f"{where}: unexpected argument(s) {' '.join(stray)} (fix: options are --name=value)")


# -- Cloud Storage -----------------------------------------------------------------------
def _bucket_of(uri: str) -> tuple[str, str]:
    bucket, _, path = uri[len("gs://"):].partition("/")
    return bucket, path


def _gcs_call(key: str, uri: str, call):
    """Run a google-cloud-storage call; every failure becomes one ConfigError line."""
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
    import requests

    bucket, _ = _bucket_of(uri)
    try:
        return call()
    except DefaultCredentialsError:
        raise ConfigError(
            f"{key}: no Google Cloud credentials to reach {uri} (fix: `gcloud auth "
            "application-default login` or GOOGLE_APPLICATION_CREDENTIALS; for fake-gcs-server "
            "set STORAGE_EMULATOR_HOST)"
        ) from None
    except (gexc.Forbidden, gexc.Unauthorized, GoogleAuthError) as exc:
        raise ConfigError(
            f"{key}: the credentials may not use bucket {bucket!r} ({type(exc).__name__}; fix: "
            "grant storage.objects.list/get/create on it or use other credentials)"
        ) from None
    except (requests.exceptions.RequestException, gexc.GoogleAPIError, OSError) as exc:
        raise ConfigError(
            f"{key}: cannot reach Cloud Storage for {uri} ({type(exc).__name__}: {str(exc)[:160]})"
        ) from None


def check_bucket(key: str, uri: str):
    """The bucket of ``uri`` exists and the credentials reach it; returns the bucket."""
    from google.cloud import storage

    name, _ = _bucket_of(uri)
    if not name:
        raise ConfigError(f"{key}: {uri!r} names no bucket (fix: gs://BUCKET/prefix)")
    bucket = _gcs_call(
        key, uri,
        lambda: storage.Client().lookup_bucket(name, timeout=CHECK_TIMEOUT_S, retry=None),
    )
    if bucket is None:
        raise ConfigError(f"{key}: bucket {name!r} does not exist (fix: create it or correct {key})")
    return bucket


# -- output ------------------------------------------------------------------------------
def check_output(output: str) -> None:
    """The output can be written: a directory (or creatable), or a reachable bucket."""
    if output.startswith("gs://"):
        check_bucket("output", output)
        return
    if "://" in output:
        raise ConfigError(f"output: {output!r}: only local paths and gs:// URIs are supported")
    path = os.path.abspath(output)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"output: {path} is a file, not a directory (fix: --output a directory)")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".embedpipe-write-check-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"output: cannot write to {path} ({exc.strerror or exc}; fix: choose a writable "
            "directory or fix its permissions)"
        ) from None


def check_existing_output(output: str) -> None:
    """Commands on an existing run: its output must be reachable (a bucket that exists)."""
    if output.startswith("gs://"):
        check_bucket("--output", output)
    elif not os.path.isdir(os.path.expanduser(output)):
        raise ConfigError(f"--output: {output} is not a directory with runs (fix: the run's --output)")


# -- sources -----------------------------------------------------------------------------
def _local_has_objects(pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return any(os.path.isfile(p) for p in glob.iglob(pattern, recursive=True))
    if os.path.isdir(pattern):
        for _directory, dirs, files in os.walk(pattern):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            if any(not f.startswith(".") for f in files):
                return True
        return False
    return True


def _gcs_has_objects(pattern: str) -> bool:
    from google.cloud import storage

    bucket, path = _bucket_of(pattern)
    cut = min((path.find(c) for c in "*?[" if c in path), default=len(path))
    check_bucket("sources", pattern)
    blobs = _gcs_call(
        "sources", pattern,
        lambda: list(storage.Client().list_blobs(bucket, prefix=path[:cut] or None, max_results=1,
                                                 timeout=CHECK_TIMEOUT_S, retry=None)),
    )
    return bool(blobs)


def check_sources(settings: Settings, strict: bool) -> None:
    """Every source exists (or, for globs and prefixes, matches something: a warning, or
    an error with ``--strict``). An empty corpus is a valid run, so it is not refused."""
    sources = settings.config.sources
    if not sources:
        raise ConfigError("sources: at least one source URI is required (fix: --sources DIR)")
    for src in sources:
        if src.startswith("gs://"):
            found = _gcs_has_objects(src)
        elif "://" in src:
            raise ConfigError(f"sources: {src!r}: only local paths and gs:// URIs are supported")
        else:
            path = os.path.expanduser(src)
            if not any(c in path for c in "*?[") and not os.path.lexists(path):
                raise ConfigError(f"sources: {src!r} does not exist (fix: correct the path)")
            found = _local_has_objects(path)
        if not found:
            message = f"sources: {src!r} matches no objects"
            if strict:
                raise ConfigError(f"{message} (--strict)")
            warn(f"{message}; the run will have nothing new from it (use --strict to refuse)")


# -- the backend -------------------------------------------------------------------------
def check_backend(settings: Settings) -> None:
    """The gemini backend answers, accepts the key and serves the model: one ``models.get``
    with no retries, in seconds. The embedded emulator needs no check."""
    c = settings.config
    if c.backend != "gemini":
        return
    import httpx

    from transforms.gemini_client import ApiCallError, ApiKeyMissing, BatchClient

    try:
        key = settings.api_key()
    except ApiKeyMissing as exc:
        raise ConfigError(f"gemini.api_key_env: {exc} (fix: export {c.gemini.api_key_env}=<key>)") from None
    client = BatchClient.connect(c.gemini.base_url, key, timeout_s=min(CHECK_TIMEOUT_S, c.gemini.timeout_s),
                                 retry_attempts=1)
    url = client.base_url
    try:
        client.check_model(c.model)
    except httpx.TimeoutException:
        raise ConfigError(
            f"gemini.base_url: {url} did not answer within {CHECK_TIMEOUT_S:.0f}s "
            "(fix: check the endpoint, proxy and network, or correct gemini.base_url)"
        ) from None
    except httpx.TransportError as exc:
        raise ConfigError(
            f"gemini.base_url: cannot connect to {url} ({type(exc).__name__}: {exc}; fix: start "
            "the endpoint or correct gemini.base_url)"
        ) from None
    except ApiCallError as exc:
        if exc.code in (401, 403) or (exc.code == 400 and "api key" in str(exc).lower()):
            raise ConfigError(
                f"gemini.api_key_env: the key in ${c.gemini.api_key_env} was rejected by {url} "
                f"(HTTP {exc.code} {exc.status}; fix: export a valid key)"
            ) from None
        if exc.code == 404:
            raise ConfigError(f"model: {c.model} is not served by {url} (HTTP 404; fix: check model)") from None
        warn(f"{url} answered {exc.code} {exc.status} to a check; going on (requests are retried)")
