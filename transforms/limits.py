"""Load per-model limits (``configs/limits/<model>.yaml``) into ``ModelLimits``.

The pipeline's chunkers and the API emulator read the same files, so a limit changed in
one place is enforced by both: the emulator rejects what the chunkers would never send.
Keys map 1:1 to ``ModelLimits`` fields; a missing or unknown key is a config error that
names the file and the key rather than surfacing later as a ``TypeError``.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml

from transforms.settings import ModelLimits

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The packaged configs: ``transforms/configs`` links to the repository's ``configs/``, and
builds copy it into the wheel, so limits and prices ship with every install."""

_TOKENS_PER_UNIT_KEYS = ("image", "audio_second", "video_second", "pdf_page")


def _coerce(value: object, kind: object, where: str) -> object:
    """Convert one YAML value to the field's declared type, or explain why not."""
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    # Otherwise tuple[str, ...]: YAML lists become tuples so the dataclass stays hashable.
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def limits_from_mapping(data: typing.Mapping[str, object], source: str) -> ModelLimits:
    """Build ``ModelLimits`` from a parsed mapping; ``source`` names it in errors."""
    if not isinstance(data, typing.Mapping):
        raise ValueError(f"{source}: expected a mapping of limit keys, got {type(data).__name__}")
    hints = typing.get_type_hints(ModelLimits)
    names = [f.name for f in dataclasses.fields(ModelLimits)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown key {unknown[0]!r} (allowed: {', '.join(names)})")
    missing = [n for n in names if n not in data]
    if missing:
        raise ValueError(f"{source}: missing key {missing[0]!r}")
    values = {name: _coerce(data[name], hints[name], f"{source}: key {name!r}") for name in names}
    return ModelLimits(**values)


def load_limits_file(path: str | Path) -> ModelLimits:
    """Load one limits YAML file."""
    path = Path(path)
    with path.open("r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return limits_from_mapping(data, str(path))


def load_limits_dir(path: str | Path) -> dict[str, ModelLimits]:
    """Load every ``*.yaml``/``*.yml`` in ``path``, keyed by each file's ``model``."""
    directory = Path(path)
    if not directory.is_dir():
        raise ValueError(f"limits directory {directory} does not exist")
    out: dict[str, ModelLimits] = {}
    origin: dict[str, Path] = {}
    for file in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        limits = load_limits_file(file)
        if limits.model in out:
            raise ValueError(
                f"{file}: model {limits.model!r} is already defined in {origin[limits.model]}"
            )
        out[limits.model] = limits
        origin[limits.model] = file
    if not out:
        raise ValueError(f"limits directory {directory} holds no *.yaml files")
    return out


def load_tokens_per_unit(pricing_path: str | Path) -> dict[str, float]:
    """Read ``tokens_per_unit`` (image, audio_second, video_second, pdf_page) from pricing.yaml."""
    path = Path(pricing_path)
    with path.open("r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    table = data.get("tokens_per_unit") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: missing key 'tokens_per_unit'")
    out = {}
    for key in _TOKENS_PER_UNIT_KEYS:
        if key not in table:
            raise ValueError(f"{path}: missing key 'tokens_per_unit.{key}'")
        out[key] = _coerce(table[key], float, f"{path}: key 'tokens_per_unit.{key}'")
    return out
