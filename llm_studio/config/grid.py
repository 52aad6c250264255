"""Grid search: one config per combination of values, for the settings a grid can vary.

Which settings can be varied follows from their declarations: a number with a `range`, or one
value out of closed `choices`. Lists, free text, secrets, paths and columns cannot. Each value goes
through `coerce`, so a grid value is checked exactly like the same value in a YAML file.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import typing
from typing import Any

from llm_studio.config.checks import CheckResult, check_config
from llm_studio.config.problem_types import BaseConfig
from llm_studio.config.settings import ConfigError, SettingSpec, coerce, spec_of
from llm_studio.config.yaml_io import iter_settings

MAX_COMBINATIONS = 64
MAX_NAME_LENGTH = 100  # the store's limit on experiment names (llm_studio/store/db.py)
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._-]")


def _griddable(annotation: Any, spec: SettingSpec | None) -> bool:
    if spec is None or spec.multi or spec.free_text:
        return False
    if typing.get_origin(annotation) is list or annotation is bool:
        return False
    if spec.choices is not None:
        return True
    return spec.range is not None and annotation in (int, float)


def grid_keys(cfg: BaseConfig) -> list[str]:
    """Dotted keys of the settings a grid search may vary for this config's problem type."""
    return [
        key
        for key, _, f, annotation in iter_settings(cfg)
        if "." in key and _griddable(annotation, spec_of(f))
    ]


def _setting(cfg: BaseConfig, key: str) -> tuple[Any, str, Any, SettingSpec | None]:
    """(owner object, field name, annotation, spec) of a grid-searchable key, or ConfigError."""
    for dotted, owner, f, annotation in iter_settings(cfg):
        if dotted == key:
            spec = spec_of(f)
            if "." not in key or not _griddable(annotation, spec):
                raise ConfigError(
                    f"{key}: cannot be grid-searched; only numbers with a range and single "
                    "choices can (e.g. training.learning_rate)"
                )
            return owner, f.name, annotation, spec
    raise ConfigError(f"{key}: not a setting of {cfg.problem_type}")


def parse_values(cfg: BaseConfig, key: str, text: str | list) -> list[Any]:
    """A user's "0.001, 0.0001" (or a list from a multi-select) as checked values of `key`.

    Empty items are skipped and repeats dropped; an empty text gives []. A value the setting does
    not accept raises ConfigError naming the key, the value and what is allowed.
    """
    _, _, annotation, spec = _setting(cfg, key)
    items = text if isinstance(text, list) else str(text).split(",")
    values: list[Any] = []
    for item in items:
        item = item.strip() if isinstance(item, str) else item
        if item == "":
            continue
        value = coerce(key, item, annotation, spec)
        if value not in values:
            values.append(value)
    return values


def parse_grid(cfg: BaseConfig, texts: dict[str, str | list]) -> dict[str, list[Any]]:
    """Per-key texts to a grid; keys whose text is empty are left out (their single value holds)."""
    grid = {}
    for key, text in texts.items():
        values = parse_values(cfg, key, text)
        if values:
            grid[key] = values
    return grid


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # repr keeps distinct floats distinct, unlike "%g"
    return str(value)


def _short_names(keys: list[str]) -> dict[str, str]:
    """The field name (`lora_r`), or `section.field` where two sections share a field name."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (n if last.count(n) == 1 else k) for k, n in zip(keys, last, strict=True)}


def combination_name(base: str, varied: dict[str, Any], short: dict[str, str]) -> str:
    """`base_learning_rate-0.001_lora_r-4`: safe for the store's name check and at most 100 long."""
    suffix = "_".join(f"{short[k]}-{_format(v)}" for k, v in varied.items())
    suffix = _UNSAFE.sub("-", suffix)
    if not suffix:
        return base
    room = MAX_NAME_LENGTH - len(suffix) - 1
    if room < 1:
        return ""  # too long to be readable: the caller numbers the combinations instead
    return f"{base[:room].rstrip()}_{suffix}"


def expand_grid(cfg: BaseConfig, grid: dict[str, list[Any]]) -> list[BaseConfig]:
    """One copy of `cfg` per combination of the grid's values (cartesian product, in key order).

    Values are coerced and checked per key. Keys with more than one value name the combination:
    `experiment_name` becomes `<base>_<field>-<value>_...`, distinct for every combination.
    """
    if not grid:
        raise ConfigError("grid: no setting to vary; enter values for at least one setting")
    checked: dict[str, list[Any]] = {}
    for key, values in grid.items():
        _setting(cfg, key)
        if not values:
            raise ConfigError(f"{key}: the grid needs at least one value")
        checked[key] = parse_values(cfg, key, list(values))
    sizes = [len(v) for v in checked.values()]
    total = math.prod(sizes)
    if total > MAX_COMBINATIONS:
        product = " × ".join(str(s) for s in sizes)
        raise ConfigError(
            f"grid: {total} combinations asked for ({product}); at most {MAX_COMBINATIONS} "
            "are allowed, so enter fewer values"
        )
    varied_keys = [k for k, v in checked.items() if len(v) > 1]
    short = _short_names(varied_keys)
    base = cfg.experiment_name
    configs = []
    for number, combination in enumerate(itertools.product(*checked.values()), 1):
        one = copy.deepcopy(cfg)
        chosen = dict(zip(checked, combination, strict=True))
        for key, value in chosen.items():
            owner, field_name, _, _ = _setting(one, key)
            setattr(owner, field_name, value)
        name = combination_name(base, {k: chosen[k] for k in varied_keys}, short)
        one.experiment_name = name or f"{base[: MAX_NAME_LENGTH - 8]}_grid-{number}"
        configs.append(one)
    names = [c.experiment_name for c in configs]
    if len(set(names)) < len(names):  # values that differ only in characters a name cannot hold
        for number, one in enumerate(configs, 1):
            one.experiment_name = f"{one.experiment_name[: MAX_NAME_LENGTH - 4]}-{number}"
    return configs


def check_combinations(configs: list[BaseConfig], gpu_count: int) -> CheckResult:
    """`check_config` on every combination; each message once, naming the combinations it
    holds for unless it holds for all of them."""
    found: tuple[dict[str, list[str]], dict[str, list[str]]] = ({}, {})
    for one in configs:
        result = check_config(one, gpu_count)
        for seen, messages in zip(found, (result.errors, result.warnings), strict=True):
            for message in messages:
                seen.setdefault(message, []).append(one.experiment_name)

    def where(seen: dict[str, list[str]]) -> list[str]:
        return [
            m if len(names) == len(configs) else f"{m} (in {', '.join(names)})"
            for m, names in seen.items()
        ]

    return CheckResult(errors=where(found[0]), warnings=where(found[1]))
