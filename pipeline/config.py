"""Run configuration: YAML files in ``configs/`` loaded into typed, validated settings.

Every error names the dotted key and says how to fix it, and maps to exit code 2.
``--set a.b=value`` overrides use the same dotted names; values are parsed as YAML
scalars so ``--set dimensionality=1536`` is an int and ``--set max_cost_usd=null`` works.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from transforms.limits import DEFAULT_CONFIG_DIR, load_limits_dir
from transforms.roots import policy_roots
from transforms.settings import ChunkSettings, ModelLimits

DEFAULT_CONFIG = DEFAULT_CONFIG_DIR / "local.yaml"
"""The packaged embedded default: used when a command is given no ``--config``."""

# Keys holding paths. Relative values resolve against the directory of the config file
# that holds them, or against the working directory when given on the command line.
PATH_KEYS = ("sources", "allowed_roots", "output", "limits_dir", "pricing_file",
             "emulator.state_dir", "media.ffmpeg_path", "migration.task_types_file",
             "index.eval_queries")

# Keys that define a run's vectors and inputs: fixed once a run exists, so commands on an
# existing run (status, collect, index, ...) refuse to override them.
RUN_IDENTITY_KEYS = ("sources", "allowed_roots", "output", "backend", "model", "dimensionality",
                     "task", "text", "media", "requests", "limits_dir", "pricing_file")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ConfigError(ValueError):
    """A bad config file, key or value. Always names the key and the fix."""


class Section(BaseModel):
    """A config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GeminiSettings(Section):
    base_url: str | None = Field(
        None, description="Any endpoint speaking the Gemini REST protocol; null = the real service"
    )
    api_key_env: str = Field("GEMINI_API_KEY", description="Name of the env var holding the key")

    @field_validator("base_url")
    @classmethod
    def _url_with_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "must be an http:// or https:// URL with a host "
                f"(fix: e.g. http://{value.split('://')[-1] or '127.0.0.1:8765'})"
            )
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_var_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value) or looks_like_api_key(value):
            # Never echo the value: it may be the key itself.
            raise ValueError(
                "must be the NAME of an environment variable holding the key, e.g. "
                "GEMINI_API_KEY; the value given is not a variable name (it may be a key: it "
                "was not echoed or stored; fix: export GEMINI_API_KEY=<your key> and set "
                "gemini.api_key_env: GEMINI_API_KEY)"
            )
        return value
    timeout_s: float = Field(60.0, gt=0)
    retry_attempts: int = Field(6, ge=1, le=20)
    poll_interval_s: float = Field(30.0, ge=0)
    max_poll_interval_s: float = Field(300.0, ge=0)


class EmulatorSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    pending_seconds: float = Field(0.0, ge=0)
    running_seconds: float = Field(0.0, ge=0)
    state_dir: str | None = None


class TextSettings(Section):
    target_chars: int = Field(2000, ge=50, description="Preferred chunk size in characters")
    overlap_chars: int = Field(200, ge=0, description="Characters repeated between neighbours")
    title_from_filename: bool = True


class MediaSettings(Section):
    image_max_side: int = Field(3072, ge=64)
    inline_max_bytes: int = Field(14_000_000, ge=1024)
    files_api_threshold_bytes: int = Field(
        8_000_000, ge=0, description="Media parts above this go through the Files API, not inline"
    )
    video_overlap_seconds: float = Field(0.0, ge=0)
    video_keep_audio: bool = True
    extract_audio_from_video: bool = False
    video_min_coverage: float = Field(0.98, gt=0, le=1)
    truncated_media: Literal["deadletter", "warn"] = "deadletter"
    pdf_max_pages: int = Field(5000, ge=1)
    ffmpeg_path: str | None = None
    ffmpeg_timeout_seconds: float = Field(600.0, gt=0)


class RequestSettings(Section):
    max_file_bytes: int = Field(256_000_000, ge=10_000, description="Per request file (API: 2 GB)")
    max_lines_per_file: int = Field(20_000, ge=1)
    max_tokens_per_file: int | None = Field(
        None, ge=1, description="Defaults to the enqueued-token quota"
    )


class QuotaSettings(Section):
    enqueued_tokens: int = Field(
        500_000, ge=1, description="Batch enqueued-token quota per model (tiers 0.5M / 5M / 10M)"
    )
    max_concurrent_jobs: int = Field(100, ge=1)
    expected_job_hours: float = Field(
        1.0, gt=0, description="Typical batch turnaround, for plan.json's queue estimate (SLO: 24 h)"
    )


class IndexSettings(Section):
    enabled: bool = True
    memory_budget: str = "8G"
    factory: str | None = None
    nlist: int | None = Field(None, ge=1)
    nprobe: int | None = Field(None, ge=1)
    target_recall_at_10: float = Field(0.95, gt=0)
    max_nprobe: int = Field(256, ge=1)
    train_sample_max: int | None = Field(None, ge=1)
    holdout_queries: int = Field(200, ge=1)
    merge: Literal["ram", "ondisk", "shards"] = "ram"
    seed: int = 0
    faiss_threads: int | None = Field(None, ge=1)
    exact_below: int = Field(10_000, ge=0, description="Corpora smaller than this get an exact index")
    eval_queries: str | None = Field(
        None, description="A file of query texts, one per line, the recall gate decides on"
    )

    @field_validator("eval_queries")
    @classmethod
    def _queries_file_exists(cls, value: str | None) -> str | None:
        if value and "://" not in value and not os.path.isfile(value):
            raise ValueError(
                "no such file (fix: a text file with one query per line, or null to gate on "
                "the query-like proxy)"
            )
        return value


class DaskSettings(Section):
    workers: int = Field(
        2, ge=1, description="Worker processes of the local cluster started when no --dask_client_address is given"
    )


RUNNERS = ("FnApiRunner", "DirectRunner", "DaskRunner", "DataflowRunner", "PrismRunner",
           "BundleBasedDirectRunner")


class RunConfig(Section):
    sources: list[str] = Field(default_factory=list)
    allowed_roots: list[str] = Field(
        default_factory=list,
        description="Local folders / gs:// prefixes outside the sources that symlinks and "
        "records media references may lead into",
    )
    output: str = ""
    backend: Literal["emulator", "gemini"] = "emulator"
    model: str = "gemini-embedding-2"
    dimensionality: int = 768
    task: str = "RETRIEVAL_DOCUMENT"
    runner: str = "FnApiRunner"
    beam_options: list[str] = Field(default_factory=list)
    limits_dir: str | None = Field(None, description="Model limits profiles; null = packaged")
    pricing_file: str | None = Field(None, description="Prices per model; null = packaged")
    max_cost_usd: float | None = Field(None, ge=0)
    deadletter_tolerance: float = Field(
        0.0, ge=0, le=1, description="Fraction of listed objects allowed to dead-letter (exit 3 above)"
    )
    max_attempts: int = Field(3, ge=1, le=10)
    gemini: GeminiSettings = GeminiSettings()
    emulator: EmulatorSettings = EmulatorSettings()
    text: TextSettings = TextSettings()
    media: MediaSettings = MediaSettings()
    requests: RequestSettings = RequestSettings()
    quota: QuotaSettings = QuotaSettings()
    index: IndexSettings = IndexSettings()
    dask: DaskSettings = DaskSettings()

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, value: str) -> str:
        """A runner embedpipe knows (see pipeline.runners), or a dotted class path."""
        if value not in RUNNERS and "." not in value:
            raise ValueError(f"unknown runner (fix: one of {', '.join(RUNNERS)}, or a dotted class path)")
        if value == "DaskRunner":
            import importlib.util

            if importlib.util.find_spec("distributed") is None:
                raise ValueError("needs dask.distributed, which is not installed "
                                 "(fix: pip install 'embedpipe[dask]')")
        return value


class Settings:
    """A validated RunConfig plus what it refers to: limits profile, pricing, paths."""

    def __init__(self, config: RunConfig, base_dir: Path):
        self.config = config
        self.base_dir = base_dir
        limits_dir = resolve_path(base_dir, config.limits_dir, DEFAULT_CONFIG_DIR / "limits")
        try:
            limits = load_limits_dir(str(limits_dir))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"limits_dir: {exc} (fix: point limits_dir at a folder of <model>.yaml profiles, "
                "or remove it to use the packaged ones)"
            ) from exc
        if config.model not in limits:
            raise ConfigError(
                f"model: no limits profile for {config.model!r} in {limits_dir} "
                f"(known: {', '.join(sorted(limits))}; fix: add {config.model}.yaml there)"
            )
        self.limits: ModelLimits = limits[config.model]
        self.all_limits = limits
        lo, hi = self.limits.dimensionality_min, self.limits.dimensionality_max
        if not lo <= config.dimensionality <= hi:
            raise ConfigError(
                f"dimensionality: {config.dimensionality} is outside {lo}..{hi} for {config.model} "
                "(fix: use 768, 1536 or 3072)"
            )
        if config.text.overlap_chars >= config.text.target_chars:
            raise ConfigError(
                "text.overlap_chars: must be smaller than text.target_chars "
                f"({config.text.overlap_chars} >= {config.text.target_chars})"
            )
        pricing_path = resolve_path(base_dir, config.pricing_file, DEFAULT_CONFIG_DIR / "pricing.yaml")
        try:
            self.pricing: dict[str, Any] = yaml.safe_load(pricing_path.read_text())
        except OSError as exc:
            raise ConfigError(f"pricing_file: cannot read {pricing_path}: {exc}") from exc
        if config.model not in self.pricing:
            raise ConfigError(f"pricing_file: no prices for model {config.model!r} in {pricing_path}")
        if not config.output:
            raise ConfigError("output: required (fix: --output DIR or gs://bucket/prefix)")

    def chunk_settings(self) -> ChunkSettings:
        c = self.config
        return ChunkSettings(
            limits=self.limits,
            text_target_chars=c.text.target_chars,
            text_overlap_chars=c.text.overlap_chars,
            title_from_filename=c.text.title_from_filename,
            image_max_side=c.media.image_max_side,
            inline_max_bytes=c.media.inline_max_bytes,
            video_overlap_seconds=c.media.video_overlap_seconds,
            video_keep_audio=c.media.video_keep_audio,
            extract_audio_from_video=c.media.extract_audio_from_video,
            video_min_coverage=c.media.video_min_coverage,
            truncated_media=c.media.truncated_media,
            pdf_max_pages=c.media.pdf_max_pages,
            ffmpeg_path=c.media.ffmpeg_path,
            ffmpeg_timeout_seconds=c.media.ffmpeg_timeout_seconds,
            source_roots=policy_roots(c.sources, c.allowed_roots),
        )

    def fingerprint(self) -> str:
        """Hash of everything that changes the vectors a chunk gets (model space + chunking)."""
        material = {
            "model": self.config.model,
            "dimensionality": self.config.dimensionality,
            "task": self.config.task,
            "chunker": self.chunk_settings().version(),
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]

    def api_key(self) -> str:
        """The key for the gemini backend, from the environment only (never a flag or a file)."""
        from pipeline.logs import register_secret
        from transforms.gemini_client import api_key_from_env

        key = api_key_from_env(self.config.gemini.api_key_env)
        register_secret(key)  # redacted from every log line, should it ever reach one
        return key


def looks_like_api_key(value: str) -> bool:
    """Google API keys start with AIza; other keys are long runs of mixed-case letters and
    digits, which environment variable names (upper case, words and underscores) are not."""
    if value.startswith("AIza"):
        return True
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value)
    return len(value) >= 24 and mixed and any(c.isdigit() for c in value)


def resolve_path(base_dir: Path, value: str | None, default: Path) -> Path:
    if value is None:
        return default
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base_dir / path


def _absolute_path(value: str, base_dir: Path) -> str:
    """A local path made absolute against ``base_dir``; URIs and bare names unchanged."""
    if "://" in value:
        return value
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base_dir, expanded))


def absolutize_paths(tree: dict, base_dir: Path) -> None:
    """Resolve the relative paths of ``tree`` (see PATH_KEYS) against ``base_dir``, in place."""
    for dotted in PATH_KEYS:
        *parents, leaf = dotted.split(".")
        node = tree
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or node.get(leaf) in (None, ""):
            continue
        value = node[leaf]
        if dotted == "media.ffmpeg_path" and isinstance(value, str) and os.sep not in value:
            continue  # a bare command name is looked up on PATH
        if isinstance(value, str):
            node[leaf] = _absolute_path(value, base_dir)
        elif isinstance(value, list):
            node[leaf] = [_absolute_path(v, base_dir) if isinstance(v, str) else v for v in value]


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set dimensionality=1536")
    key, raw = item.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML: {exc}") from exc


def load_settings(
    config_path: str | None,
    *,
    overrides: list[str] = (),
    sources: list[str] | None = None,
    output: str | None = None,
) -> Settings:
    """Read a config file (default: the packaged embedded default), apply CLI overrides,
    validate. Raises ConfigError."""
    return validate(*config_tree(config_path, overrides=overrides, sources=sources, output=output))


def config_tree(
    config_path: str | None,
    *,
    overrides: list[str] = (),
    sources: list[str] | None = None,
    output: str | None = None,
) -> tuple[dict, Path]:
    """(the config file's keys with command-line overrides merged in, the file's folder).

    Relative paths in the file resolve against the file's folder; relative paths given on
    the command line (``--sources``, ``--output``, ``--set``) against the working directory.
    """
    path = Path(config_path) if config_path else DEFAULT_CONFIG
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {config_path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {config_path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"--config: {config_path} must be a mapping of keys to values")
    tree = loaded
    base_dir = path.resolve().parent
    absolutize_paths(tree, base_dir)
    command_line: dict = {}
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(command_line, key, value)
    if sources:
        command_line["sources"] = list(sources)
    if output:
        command_line["output"] = output
    absolutize_paths(command_line, Path.cwd())
    _merge(tree, command_line)
    return tree, base_dir


def validate_model(model: type[BaseModel], tree: dict):
    """``model.model_validate(tree)`` with pydantic's errors turned into a ConfigError."""
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def validate(tree: dict, base_dir: Path) -> Settings:
    return Settings(validate_model(RunConfig, tree), base_dir)


def _merge(tree: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value)
        else:
            tree[key] = value


def override_existing_run(config: dict, overrides: list[str]) -> dict:
    """A stored run config with command-line overrides applied; keys that define the run's
    inputs or vectors (RUN_IDENTITY_KEYS) are refused."""
    patch: dict = {}
    for item in overrides:
        key, value = parse_override(item)
        if key.split(".")[0] in RUN_IDENTITY_KEYS:
            raise ConfigError(
                f"--set {key}: cannot change an existing run's {key.split('.')[0]} (it defines "
                "the run's inputs or vectors; fix: start a new run with embedpipe run/submit)"
            )
        _set_dotted(patch, key, value)
    absolutize_paths(patch, Path.cwd())
    merged = json.loads(json.dumps(config))
    _merge(merged, patch)
    return merged


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (fix: remove it or check its spelling)")
        elif key == "gemini.api_key_env":
            lines.append(f"{key}: {_message(err)}")  # never echo: the value may be a key
        else:
            lines.append(f"{key}: {_message(err)} (got {err.get('input')!r})")
    return "; ".join(lines)


def _message(err: dict) -> str:
    return err["msg"].removeprefix("Value error, ")
