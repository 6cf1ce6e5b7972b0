"""The migration config: a run config for the *target* model plus a ``migration:`` section,
and the gemini-embedding-001 task-type mapping it points to.

``migrate import`` reads them once and pins them in ``state.json`` (with the mapping's
contents and version), so every later step — and a rerun months later — uses the same
prompts and the same gate even if the files change.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator

from pipeline.config import (
    DEFAULT_CONFIG_DIR,
    ConfigError,
    RunConfig,
    Section,
    Settings,
    config_tree,
    resolve_path,
    validate_model,
)
from transforms.prompts import TASK_TYPE_MODELS, TASK_TYPES, prompt_prefix

LEGACY_MODEL = "gemini-embedding-001"


def _task_type(value: str) -> str:
    if value not in TASK_TYPES:
        raise ValueError(f"{value!r} is not a gemini-embedding-001 task type ({', '.join(TASK_TYPES)})")
    return value


class LegacyColumns(Section):
    """Column names in the legacy store; ``text`` or ``source_uri`` must hold for each row."""

    id: str = "id"
    text: str = "text"
    title: str = "title"
    embedding: str = "embedding"
    task_type: str = "task_type"
    source_uri: str = "source_uri"
    source: str | None = Field(
        None, description="Column naming the document a row belongs to (for stratified samples)"
    )


class GateSettings(Section):
    min_recall_delta: float = Field(
        -0.01, description="new recall@k minus old recall@k on labelled queries must be >= this"
    )
    min_overlap_at_k: float = Field(
        0.5, ge=0, le=1, description="mean overlap@k between sides when queries are unlabelled"
    )
    min_labelled_queries: int = Field(
        5, ge=1, description="below this many labelled queries, the overlap floor gates instead"
    )
    min_coverage: float = Field(
        1.0, ge=0, le=1, description="fraction of imported legacy rows the new index must cover"
    )


class EvaluationSettings(Section):
    k: int = Field(10, ge=1, le=1000)
    thresholds: list[float] = Field(
        default_factory=list,
        description="001 score cut-offs to translate; empty = the 001 scores' deciles",
    )
    review_queries: int = Field(20, ge=0, description="most-changed queries listed for review")


class MigrationSettings(Section):
    task_types_file: str | None = Field(
        None, description="the 001 task type → prompt mapping; null = the packaged one"
    )
    query_task_type: str = Field(
        "RETRIEVAL_QUERY", description="the 001 taskType your queries were embedded with"
    )
    default_task_type: str = Field(
        "RETRIEVAL_DOCUMENT", description="for legacy rows without a task_type"
    )
    legacy_dimensionality: int | None = Field(
        None, ge=1, description="expected 001 vector size; null = the most common in the first rows"
    )
    columns: LegacyColumns = LegacyColumns()
    reembed_from: Literal["text", "source_uri"] = Field(
        "text", description="which input re-embeds a row that has both"
    )
    rows_per_file: int = Field(5000, ge=1, description="legacy rows per materialised records file")
    subset_fraction: float = Field(0.1, gt=0, le=1, description="the subset `migrate plan` prices")
    gate: GateSettings = GateSettings()
    evaluation: EvaluationSettings = EvaluationSettings()

    @field_validator("query_task_type", "default_task_type")
    @classmethod
    def _known_task_type(cls, value: str) -> str:
        return _task_type(value)


class MigrationConfig(RunConfig):
    """A run config (for the target model) with a ``migration`` section."""

    migration: MigrationSettings = MigrationSettings()

    def run_config(self, **update) -> RunConfig:
        """The plain run config the run phases get (they know nothing of migrations)."""
        return RunConfig.model_validate({**self.model_dump(exclude={"migration"}), **update})


@dataclass(frozen=True)
class TaskTypeMap:
    """Every 001 task type → the Embedding 2 prompt for documents and for queries."""

    version: str
    document: dict
    query: dict

    def document_prefix(self, task_type: str, title: str | None) -> str:
        return prompt_prefix(self.document[task_type], title)

    def query_prompt(self, task_type: str) -> str:
        return self.query[task_type]

    def to_json(self) -> dict:
        return {"version": self.version, "task_types": {
            t: {"document": self.document[t], "query": self.query[t]} for t in TASK_TYPES}}

    @classmethod
    def from_json(cls, d: dict) -> "TaskTypeMap":
        entries = d.get("task_types")
        where = "task_types"
        if not isinstance(d.get("version"), str) or not d["version"]:
            raise ConfigError("version: the task-type mapping needs a version string")
        if not isinstance(entries, dict):
            raise ConfigError(f"{where}: expected a mapping of 001 task types")
        unknown = sorted(set(entries) - set(TASK_TYPES))
        missing = [t for t in TASK_TYPES if t not in entries]
        if unknown or missing:
            raise ConfigError(
                f"{where}: must list every gemini-embedding-001 task type exactly "
                f"(missing: {missing or 'none'}; unknown: {unknown or 'none'})"
            )
        sides: dict[str, dict] = {"document": {}, "query": {}}
        for task, entry in entries.items():
            for side, out in sides.items():
                template = (entry or {}).get(side) if isinstance(entry, dict) else None
                try:
                    prompt_prefix(str(template) if isinstance(template, str) else "")
                except ValueError as exc:
                    raise ConfigError(f"{where}.{task}.{side}: {exc}") from None
                out[task] = template
        return cls(d["version"], sides["document"], sides["query"])


def load_task_types(path: Path) -> TaskTypeMap:
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"migration.task_types_file: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"migration.task_types_file: {path} is not valid YAML: {exc}") from None
    try:
        return TaskTypeMap.from_json(loaded if isinstance(loaded, dict) else {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Migration:
    """The pinned configuration every migration step works from."""

    config: MigrationConfig
    base_dir: Path
    task_types: TaskTypeMap

    @property
    def settings(self) -> MigrationSettings:
        return self.config.migration

    def run_settings(self, **update) -> Settings:
        return Settings(self.config.run_config(**update), self.base_dir)

    def to_json(self) -> dict:
        return {
            "config": self.config.model_dump(mode="json"),
            "config_base_dir": str(self.base_dir),
            "task_types": self.task_types.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict) -> "Migration":
        return cls(MigrationConfig.model_validate(d["config"]), Path(d["config_base_dir"]),
                   TaskTypeMap.from_json(d["task_types"]))


def load_migration_config(path: str, output: str, overrides: list[str] = ()) -> Migration:
    """Read ``--config`` (plus ``--set`` overrides) for ``migrate import``. Raises ConfigError."""
    tree, base_dir = config_tree(path, overrides=overrides, output=output)
    config = validate_model(MigrationConfig, tree)
    if config.model in TASK_TYPE_MODELS:
        raise ConfigError(
            f"model: {config.model} is what you migrate from; the migration config names the "
            "target model (fix: model: gemini-embedding-2)"
        )
    if not config.index.enabled:
        raise ConfigError("index.enabled: a migration compares two indexes (fix: remove index.enabled: false)")
    task_types = resolve_path(base_dir, config.migration.task_types_file,
                              DEFAULT_CONFIG_DIR / "task_types.yaml")
    migration = Migration(config, base_dir, load_task_types(task_types))
    settings = migration.run_settings()  # the target's limits, prices, dimensionality: exit 2 now
    if LEGACY_MODEL not in settings.all_limits or LEGACY_MODEL not in settings.pricing:
        raise ConfigError(
            f"limits_dir / pricing_file: no {LEGACY_MODEL} profile or prices (fix: point them at "
            "configs/limits and configs/pricing.yaml)"
        )
    return migration
