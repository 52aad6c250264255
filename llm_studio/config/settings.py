"""How a setting is declared: once, a dataclass field whose metadata drives YAML, CLI, UI, docs.

A setting's metadata says what values it accepts (`choices` or `range`), how it is shown (`tip`,
`step`, `log_scale`), and when it is shown (`shown_if`). Nothing else in the code base repeats this.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config that cannot be run; the message names the key and what was expected."""


# A `shown_if` value meaning "the other setting has a value" (not None, "" or an empty list):
# differential_learning_rate is shown once layers are listed for it.
IS_SET = "__set__"


@dataclass(frozen=True)
class SettingSpec:
    tip: str
    choices: tuple[Any, ...] | None = None
    range: tuple[float, float] | None = None
    step: float | None = None
    log_scale: bool = False
    # A list-valued setting whose items must come from `choices` (e.g. data_sample_choice).
    multi: bool = False
    # None/"None"/"" mean "not set" for this setting (optional columns, optional paths).
    optional: bool = False
    # Shown only when every (other_key, allowed_values) pair holds, e.g. {"lora": (True,)};
    # other_key is a setting of the same section, checked when the class is defined.
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


class SettingsGroup:
    """Base of every section and config dataclass: when a subclass is defined, each `shown_if`
    of its settings must name a sibling setting, and a value that setting can take, so a typo
    fails at import instead of hiding a widget for good."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs = _declared_specs(cls)
        for name, spec in specs.items():
            for other, allowed in spec.shown_if.items() if spec else ():
                _check_shown_if(cls, name, other, allowed, specs)


def _declared_specs(cls: type) -> dict[str, SettingSpec | None]:
    """Setting name -> spec of `cls`, before @dataclass has run on it: its bases' dataclass
    fields, then its own annotated names (a Field in its namespace carries their spec)."""
    specs: dict[str, SettingSpec | None] = {}
    for base in reversed(cls.__mro__[1:]):
        specs.update({n: spec_of(f) for n, f in getattr(base, "__dataclass_fields__", {}).items()})
    for name in cls.__dict__.get("__annotations__", {}):
        own = cls.__dict__.get(name)
        specs[name] = spec_of(own) if isinstance(own, dataclasses.Field) else None
    return specs


def _check_shown_if(
    cls: type, name: str, other: str, allowed: tuple[Any, ...], specs: dict[str, SettingSpec | None]
) -> None:
    where = f"{cls.__qualname__}.{name}"
    if other not in specs:
        raise TypeError(
            f"{where}: shown_if names {other!r}, which is not a setting of {cls.__qualname__} "
            f"(its settings: {', '.join(specs)})"
        )
    spec = specs[other]
    if spec is None or spec.choices is None or spec.free_text:
        return  # open values (a number, a bool, free text): any value may be meant
    wrong = [v for v in allowed if v != IS_SET and v not in spec.choices]
    if wrong:
        raise TypeError(
            f"{where}: shown_if {other}={wrong[0]!r}, but {other} takes one of {list(spec.choices)}"
        )


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
        return _coerce_list(value, annotation, spec, fail)
    out = _coerce_scalar(value, annotation, fail)
    _check_allowed(out, spec, fail)
    return out


Fail = Callable[[str], ConfigError]


def _coerce_list(value: Any, annotation: Any, spec: SettingSpec | None, fail: Fail) -> list[Any]:
    if value is None or value == "":
        items: list[Any] = []
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise fail("a list")
    item_type = typing.get_args(annotation)[0] if typing.get_args(annotation) else str
    out = [_coerce_scalar(v, item_type, fail) for v in items]
    if spec and spec.choices is not None and not spec.free_text:
        bad = [v for v in out if v not in spec.choices]
        if bad:
            raise fail(f"items from {list(spec.choices)}")
    return out


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _to_bool(value: Any, fail: Fail) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise fail("true or false")


def _parsed_float(text: str) -> float | None:
    with suppress(ValueError):
        return float(text)
    return None


def _to_int(value: Any, fail: Fail) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with suppress(ValueError):
            return int(value)  # before float: exact for integers past 2**53
        value = _parsed_float(value)
    if isinstance(value, float) and value.is_integer():  # 3.0, "3.0" and "1e3" are integers
        return int(value)
    raise fail("an integer")


def _to_float(value: Any, fail: Fail) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    parsed = _parsed_float(value) if isinstance(value, str) else None
    if parsed is None:
        raise fail("a number")
    return parsed


def _to_str(value: Any, fail: Fail) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if value is None:
        return ""
    raise fail("a string")


_SCALARS: dict[Any, Callable[[Any, Fail], Any]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
}


def _coerce_scalar(value: Any, typ: Any, fail: Fail) -> Any:
    """`value` as `typ` (bool, int, float or str); any other type is taken as it is."""
    convert = _SCALARS.get(typ)
    return value if convert is None else convert(value, fail)


def _check_allowed(value: Any, spec: SettingSpec | None, fail: Fail) -> None:
    if spec is None or value is None:
        return
    if spec.choices is not None and not spec.free_text and value not in spec.choices:
        raise fail(f"one of {list(spec.choices)}")
    if spec.range is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = spec.range
        if not low <= value <= high:
            raise fail(f"a value between {low} and {high}")
