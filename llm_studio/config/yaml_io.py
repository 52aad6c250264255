"""Config <-> YAML and `--section.key value` overrides, all driven by the setting declarations."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from llm_studio.atomic import write_text_atomic
from llm_studio.config.problem_types import (
    DEFAULT_PROBLEM_TYPE,
    SECTION_NAMES,
    BaseConfig,
    problem_type_named,
)
from llm_studio.config.settings import ConfigError, coerce, field_types, spec_of


def iter_settings(cfg: BaseConfig) -> Iterable[tuple[str, Any, dataclasses.Field, Any]]:
    """Yield (dotted key, owner object, field, annotation) for every setting of a config."""
    yield from _iter_fields(cfg, "")


def _iter_fields(obj: Any, prefix: str):
    hints = field_types(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _iter_fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", obj, f, hints[f.name]


def config_class(problem_type: Any) -> type[BaseConfig]:
    return problem_type_named(problem_type).config


def from_dict(data: dict[str, Any]) -> tuple[BaseConfig, list[str]]:
    """Build a config from nested YAML data. Returns the config and warnings for unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError("the YAML must be a mapping of settings")
    problem_type = data.get("problem_type", DEFAULT_PROBLEM_TYPE)
    cfg = config_class(problem_type)()
    warnings: list[str] = []
    hints = field_types(type(cfg))
    known_top = {f.name: f for f in dataclasses.fields(cfg)}
    for key, value in data.items():
        if key not in known_top:
            warnings.append(f"unknown setting '{key}' is ignored")
            continue
        if key in SECTION_NAMES:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: got {value!r}, expected a mapping of settings")
            _load_section(getattr(cfg, key), key, value, warnings)
        else:
            f = known_top[key]
            setattr(cfg, key, coerce(key, value, hints[key], spec_of(f)))
    return cfg, warnings


def _load_section(obj: Any, name: str, values: dict[str, Any], warnings: list[str]) -> None:
    hints = field_types(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in fields:
            warnings.append(f"unknown setting '{name}.{key}' is ignored")
            continue
        setattr(obj, key, coerce(f"{name}.{key}", value, hints[key], spec_of(fields[key])))


def to_dict(cfg: BaseConfig) -> dict[str, Any]:
    """Nested plain data in the guide's YAML shape; unset optional values are written as 'None'."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = {
                g.name: _plain(getattr(value, g.name)) for g in dataclasses.fields(value)
            }
        else:
            out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if value is None:
        return "None"
    if isinstance(value, list):
        return list(value)
    return value


def load_config(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[BaseConfig, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        raise ConfigError(f"config file {path} is empty")
    if overrides:
        # problem_type decides the class, so apply an override of it before building.
        pairs = parse_override_args(overrides)
        if "problem_type" in pairs:
            data["problem_type"] = pairs.pop("problem_type")
        cfg, warnings = from_dict(data)
        apply_overrides(cfg, pairs)
        return cfg, warnings
    return from_dict(data)


def save_config(cfg: BaseConfig, path: str | Path) -> None:
    """Write the YAML atomically: readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(to_dict(cfg), sort_keys=True, allow_unicode=True)
    write_text_atomic(path, text)


def parse_override_args(args: list[str]) -> dict[str, str]:
    """`--training.epochs 2 --dataset.prompt_column a,b` -> {"training.epochs": "2", ...}."""
    pairs: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(
                f"unexpected argument {arg!r}; overrides look like --section.key value"
            )
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(args):
            value = args[i + 1]
            i += 2
        else:
            raise ConfigError(f"override --{key} has no value")
        pairs[key] = value
    return pairs


def apply_overrides(cfg: BaseConfig, pairs: dict[str, str]) -> None:
    settings = {key: (owner, f, ann) for key, owner, f, ann in iter_settings(cfg)}
    for key, value in pairs.items():
        if key not in settings:
            raise ConfigError(f"--{key}: no such setting")
        owner, f, ann = settings[key]
        if key == "problem_type" and value != cfg.problem_type:
            raise ConfigError("--problem_type: change it in the YAML instead")
        setattr(owner, f.name, coerce(key, value, ann, spec_of(f)))
