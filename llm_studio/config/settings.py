"""How a setting is declared: once, as a dataclass field whose metadata drives YAML, CLI, UI and docs.

A setting's metadata says what values it accepts (`choices` or `range`), how it is shown (`label`,
`tip`, `widget`), and when it is shown (`shown_if`). Nothing else in the code base repeats this.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config that cannot be run; the message names the key and what was expected."""


@dataclass(frozen=True)
class SettingSpec:
    tip: str
    label: str = ""
    choices: tuple[Any, ...] | None = None
    range: tuple[float, float] | None = None
    step: float | None = None
    log_scale: bool = False
    # A list-valued setting whose items must come from `choices` (e.g. data_sample_choice).
    multi: bool = False
    # None/"None"/"" mean "not set" for this setting (optional columns, optional paths).
    optional: bool = False
    # Shown only when every (other_key, allowed_values) pair holds, e.g. {"lora": (True,)}.
    shown_if: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    # Choices may also be typed freely (combobox) instead of picked from a closed list.
    free_text: bool = False
    # How a machine-dependent default is found (docs/settings.md shows this, not one value).
    default_text: str = ""


@dataclass(frozen=True)
class MachineDefault:
    """A default that depends on the machine: `compute()` gives this machine's value when a
    config is built; `describe` says how, for docs/settings.md."""

    compute: Callable[[], Any]
    describe: str


def setting(
    default: Any,
    *,
    tip: str,
    label: str = "",
    choices: tuple[Any, ...] | None = None,
    range: tuple[float, float] | None = None,  # noqa: A002 - mirrors the UI vocabulary
    step: float | None = None,
    log_scale: bool = False,
    multi: bool = False,
    optional: bool = False,
    shown_if: dict[str, Any] | None = None,
    free_text: bool = False,
) -> Any:
    """Declare one setting. Mutable defaults (lists) are copied per instance; a MachineDefault
    is computed per instance."""
    spec = SettingSpec(
        tip=tip,
        label=label,
        choices=tuple(choices) if choices is not None else None,
        range=range,
        step=step,
        log_scale=log_scale,
        multi=multi,
        optional=optional,
        shown_if={k: v if isinstance(v, tuple) else (v,) for k, v in (shown_if or {}).items()},
        free_text=free_text,
        default_text=default.describe if isinstance(default, MachineDefault) else "",
    )
    if isinstance(default, MachineDefault):
        return field(default_factory=default.compute, metadata={"setting": spec})
    if isinstance(default, list):
        return field(default_factory=functools.partial(list, default), metadata={"setting": spec})
    return field(default=default, metadata={"setting": spec})


def section(cls: type) -> Any:
    """A nested config section, built with its own defaults."""
    return field(default_factory=cls)


def spec_of(f: dataclasses.Field) -> SettingSpec | None:
    return f.metadata.get("setting")


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


NONE_STRINGS = (None, "None", "none", "")


def coerce(key: str, value: Any, annotation: Any, spec: SettingSpec | None) -> Any:
    """Turn a YAML or CLI value into the declared type, or raise a ConfigError naming the key."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    is_optional = origin is typing.Union and type(None) in args
    if is_optional:
        annotation = next(a for a in args if a is not type(None))
        origin = typing.get_origin(annotation)
    if (is_optional or (spec and spec.optional)) and value in NONE_STRINGS:
        return None

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{key}: got {value!r}, expected {expected}")

    if origin is list:
        if value is None or value == "":
            items: list[Any] = []
        elif isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise fail("a list")
        item_type = typing.get_args(annotation)[0] if typing.get_args(annotation) else str
        out = [_coerce_scalar(key, v, item_type, fail) for v in items]
        if spec and spec.choices is not None and not spec.free_text:
            bad = [v for v in out if v not in spec.choices]
            if bad:
                raise fail(f"items from {list(spec.choices)}")
        return out
    out = _coerce_scalar(key, value, annotation, fail)
    _check_allowed(key, out, spec, fail)
    return out


def _coerce_scalar(key: str, value: Any, typ: Any, fail: Callable[[str], ConfigError]) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise fail("true or false")
    if typ is int:
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    as_float = float(value)
                except ValueError:
                    raise fail("an integer") from None
                if as_float.is_integer():
                    return int(as_float)
        raise fail("an integer")
    if typ is float:
        if isinstance(value, bool):
            raise fail("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise fail("a number")
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if value is None:
            return ""
        raise fail("a string")
    return value


def _check_allowed(
    key: str, value: Any, spec: SettingSpec | None, fail: Callable[[str], ConfigError]
) -> None:
    if spec is None or value is None:
        return
    if spec.choices is not None and not spec.free_text and value not in spec.choices:
        raise fail(f"one of {list(spec.choices)}")
    if spec.range is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = spec.range
        if not low <= value <= high:
            raise fail(f"a value between {low} and {high}")
