"""Experiment settings as Wave widgets, derived from the setting declarations.

Each setting's widget follows from its declaration: a toggle for a bool, a dropdown for closed
choices, a combobox for choices that may be typed, a spinbox or slider for a number with a range,
a textbox otherwise. `shown_if` decides visibility; the settings it depends on re-render the form
when changed. Values come back through `coerce`, so the form checks exactly like YAML does.

With grid search on, every setting a grid can vary (`llm_studio.config.grid.grid_keys`) gets a
second widget under its own for the values to try: a multi-select for closed choices, a textbox
of comma-separated values for numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from h2o_wave import ui

from llm_studio.config.base import SECTION_NAMES, BaseConfig
from llm_studio.config.grid import grid_keys
from llm_studio.config.settings import IS_SET, coerce, field_types, spec_of

SECTION_TITLES = {
    "dataset": "Dataset",
    "tokenizer": "Tokenizer",
    "architecture": "Architecture",
    "training": "Training",
    "augmentation": "Augmentation",
    "prediction": "Prediction",
    "environment": "Environment",
    "logging": "Logging",
}
PREFIX = "cfg__"
GRID_PREFIX = "grid__"


def widget_name(key: str) -> str:
    return PREFIX + key.replace(".", "__")


def grid_widget_name(key: str) -> str:
    return GRID_PREFIX + key.replace(".", "__")


def key_of(name: str, prefix: str = PREFIX) -> str:
    return name[len(prefix) :].replace("__", ".")


def setting_label(key: str) -> str:
    """The name a setting shows under: its key in words."""
    return key.rsplit(".", 1)[-1].replace("_", " ").capitalize()


def _visible(spec, owner) -> bool:
    for other, allowed in spec.shown_if.items():
        value = getattr(owner, other, None)
        if allowed == (IS_SET,):
            if value in (None, "", []):
                return False
        elif value not in allowed:
            return False
    return True


def _controls(cfg: BaseConfig) -> set[str]:
    """Settings others depend on: changing them re-renders the form."""
    names = set()
    for section in SECTION_NAMES:
        owner = getattr(cfg, section)
        for f in dataclasses.fields(owner):
            spec = spec_of(f)
            if spec:
                names |= {f"{section}.{other}" for other in spec.shown_if}
    return names


def _widget(key: str, value: Any, annotation, spec, trigger: bool) -> ui.Component:
    name, label, tip = widget_name(key), setting_label(key), spec.tip
    is_list = getattr(annotation, "__origin__", None) is list or isinstance(value, list)
    if isinstance(value, bool):
        return ui.toggle(name=name, label=label, value=value, trigger=trigger, tooltip=tip)
    if spec.choices is not None and is_list:
        return ui.dropdown(
            name=name,
            label=label,
            values=[str(v) for v in value],
            choices=[ui.choice(str(c), str(c)) for c in spec.choices],
            trigger=trigger,
            tooltip=tip,
        )
    if spec.choices is not None and spec.free_text:
        return ui.combobox(
            name=name, label=label, value=str(value), choices=[str(c) for c in spec.choices],
            trigger=trigger, tooltip=tip,
        )  # fmt: skip
    if spec.choices is not None:
        return ui.dropdown(
            name=name,
            label=label,
            value=str(value),
            choices=[ui.choice(str(c), str(c)) for c in spec.choices],
            trigger=trigger,
            tooltip=tip,
        )
    if isinstance(value, int) and spec.range is not None:
        low, high = spec.range
        return ui.spinbox(
            name=name, label=label, value=value, min=low, max=high, step=spec.step or 1,
            trigger=trigger, tooltip=tip,
        )  # fmt: skip
    if isinstance(value, float) and spec.range is not None and not spec.log_scale:
        low, high = spec.range
        return ui.slider(
            name=name, label=label, value=value, min=low, max=high, step=spec.step or (high - low) / 100,
            trigger=trigger, tooltip=tip,
        )  # fmt: skip
    text = ",".join(str(v) for v in value) if is_list else ("None" if value is None else str(value))
    # One-line textboxes cannot hold newlines (e.g. the prompt column separator): show them as \n.
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return ui.textbox(name=name, label=label, value=text, trigger=trigger, tooltip=tip)


def _unescape(value):
    if not isinstance(value, str):
        return value
    return value.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")


def _grid_widget(key: str, spec, value: Any, current: str | list) -> ui.Component:
    name, label = grid_widget_name(key), f"{setting_label(key)}: grid values"
    tip = "Values to try, one experiment each; empty keeps the single value above."
    if spec.choices is not None:
        values = current if isinstance(current, list) else [v for v in str(current).split(",") if v]
        return ui.dropdown(
            name=name, label=label, values=[str(v) for v in values], placeholder="Only the value above",
            choices=[ui.choice(str(c), str(c)) for c in spec.choices], tooltip=tip,
        )  # fmt: skip
    text = ", ".join(str(v) for v in current) if isinstance(current, list) else str(current)
    return ui.textbox(
        name=name,
        label=label,
        value=text,
        placeholder=f"Comma-separated, e.g. {value}, …",
        tooltip=tip,
    )


def settings_items(
    cfg: BaseConfig, grid_values: dict[str, str | list] | None = None
) -> list[ui.Component]:
    """Widgets of every visible setting, grouped under the guide's section titles.

    `grid_values` (key -> what its grid widget holds) turns grid search on: each grid-searchable
    setting gets a grid widget too. None keeps the plain form.
    """
    controls = _controls(cfg)
    griddable = set(grid_keys(cfg)) if grid_values is not None else set()
    items: list[ui.Component] = []
    for section in SECTION_NAMES:
        owner = getattr(cfg, section)
        hints = field_types(type(owner))
        group: list[ui.Component] = []
        for f in dataclasses.fields(owner):
            spec = spec_of(f)
            key = f"{section}.{f.name}"
            if spec is None or not _visible(spec, owner):
                continue
            trigger = key in controls
            group.append(_widget(key, getattr(owner, f.name), hints[f.name], spec, trigger))
            if key in griddable:
                group.append(
                    _grid_widget(key, spec, getattr(owner, f.name), grid_values.get(key, ""))  # type: ignore[union-attr]  # griddable is empty without grid_values
                )
        if group:
            items.append(ui.text_l(SECTION_TITLES[section]))
            items += group
    return items


def apply_form(cfg: BaseConfig, args: dict[str, Any]) -> None:
    """Set the config from submitted widget values; a bad value raises ConfigError naming it."""
    for name, value in args.items():
        if not name.startswith(PREFIX) or value is None:
            continue
        key = key_of(name)
        section, _, field_name = key.partition(".")
        owner = getattr(cfg, section, None)
        if owner is None or not hasattr(owner, field_name):
            continue
        f = next(f for f in dataclasses.fields(owner) if f.name == field_name)
        annotation = field_types(type(owner))[field_name]
        setattr(owner, field_name, coerce(key, _unescape(value), annotation, spec_of(f)))


def read_grid(args: dict[str, Any]) -> dict[str, str | list]:
    """What the shown grid widgets hold, by setting key (empty ones included)."""
    return {
        key_of(name, GRID_PREFIX): value
        for name, value in args.items()
        if name.startswith(GRID_PREFIX) and value is not None
    }
