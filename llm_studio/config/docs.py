"""The settings reference (docs/settings.md), derived from the declarations."""

from __future__ import annotations

from llm_studio.config.problem_types import ALL_PROBLEM_TYPES
from llm_studio.config.settings import IS_SET, spec_of
from llm_studio.config.yaml_io import iter_settings, to_dict


def _allowed(spec) -> str:
    if spec is None:
        return ""
    if spec.choices is not None:
        text = ", ".join(f"`{c}`" for c in spec.choices)
        return (
            f"any of {text}" if spec.multi else text + (" or free text" if spec.free_text else "")
        )
    if spec.range is not None:
        return f"{spec.range[0]} – {spec.range[1]}"
    return ""


def _shown_if(spec) -> str:
    if spec is None or not spec.shown_if:
        return ""
    parts = []
    for key, values in spec.shown_if.items():
        if values == (IS_SET,):
            parts.append(f"`{key}` set")
        else:
            parts.append(f"`{key}` = " + " or ".join(f"`{v}`" for v in values))
    return "; ".join(parts)


def _default(data: dict, key: str, spec) -> str:
    if spec is not None and spec.default_text:
        return spec.default_text  # machine-dependent: how it is found, not this machine's value
    value = data
    for part in key.split("."):
        value = value[part]
    return f"`{value!r}`" if value != "" else "`''`"


def settings_markdown(coverage: dict[str, str]) -> str:
    lines = [
        "# Settings",
        "",
        "Generated from the declarations in `llm_studio/config/` by",
        "`python scripts/generate_settings_doc.py`; do not edit by hand. YAML keys are",
        "`section.key`; any of them can be overridden on the command line as",
        "`--section.key value`. *Test* names the test that fails if the setting is ignored.",
        "",
    ]
    for problem_type in ALL_PROBLEM_TYPES:
        cfg = problem_type.config()
        defaults = to_dict(cfg)
        lines += [
            f"## {problem_type.label} (`{problem_type.name}`)",
            "",
            "| Setting | Default | Allowed | Shown when | What it does | Test |",
            "|---|---|---|---|---|---|",
        ]
        for key, _owner, f, _ann in iter_settings(cfg):
            spec = spec_of(f)
            tip = spec.tip if spec else ""
            test = coverage.get(key, "")
            cells = [
                f"`{key}`",
                _default(defaults, key, spec),
                _allowed(spec),
                _shown_if(spec),
                tip,
                test,
            ]
            # A literal | would split the cell; markdown tables take it escaped.
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)
