"""The dataset section's column settings: guesses from file and column names (`suggest_*`),
and the checks of what the user chose (`apply_settings`, `check_columns`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from llm_studio.config.problem_types import (
    DEFAULT_PROBLEM_TYPE,
    BaseConfig,
    ProblemType,
    problem_type_named,
    problem_type_of,
)
from llm_studio.config.settings import ConfigError, coerce, field_types, spec_of
from llm_studio.store.import_types import DataFiles, DatasetImportError

# Set from the train/validation dataframe choice, not through `settings`.
_DATAFRAME_KEYS = ("train_dataframe", "validation_dataframe", "validation_strategy")

PROMPT_NAMES = ("instruction", "prompt", "question", "input", "query", "text", "context")
LABEL_PROMPT_NAMES = ("text", "prompt", "instruction", "question", "input", "sentence", "review")
ANSWER_NAMES = ("output", "response", "answer", "completion", "chosen_response", "chosen")
DPO_ANSWER_NAMES = ("chosen_response", "chosen", "output", "response", "answer")
LABEL_NAMES = ("label", "labels", "target", "class", "score", "y")
REJECTED_NAMES = ("rejected_response", "rejected", "rejected_answer", "rejected_output")
PARENT_NAMES = ("parent_id", "parent")
SYSTEM_NAMES = ("system", "system_prompt")
_VALIDATION_RE = re.compile(r"(^|[^a-z])(valid|validation|val|dev|eval)([^a-z]|$)")


def suggest_dataframes(names: Iterable[str]) -> tuple[str | None, str | None]:
    """(train, validation) guesses from file names: `train*`, and `valid*`/`val`/`dev`/`eval`."""
    names = list(names)
    if not names:
        return None, None
    stems = {n: PurePosixPath(n).stem.lower() for n in names}
    validation = next((n for n in names if _VALIDATION_RE.search(stems[n])), None)
    train = next((n for n in names if "train" in stems[n] and n != validation), None)
    if train is None:
        train = next((n for n in names if n != validation), names[0])
    return train, (validation if validation != train else None)


class _ColumnPicker:
    """Takes columns one at a time: the first free one of likely names (case-insensitive), or
    else the next free one that is not `id`."""

    def __init__(self, columns: Iterable[str]) -> None:
        self.columns = [str(c) for c in columns]
        self.lower: dict[str, str] = {}
        for c in self.columns:
            self.lower.setdefault(c.lower(), c)
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.lower

    def pick(self, candidates: Iterable[str]) -> str | None:
        for cand in candidates:
            if cand in self.lower and self.lower[cand] not in self.used:
                self.used.add(self.lower[cand])
                return self.lower[cand]
        return None

    def fallback(self) -> str | None:
        for c in self.columns:
            if c not in self.used and c.lower() != "id":
                self.used.add(c)
                return c
        return None


def suggest_columns(problem_type: str, columns: Iterable[str]) -> dict[str, Any]:
    """Column settings guessed from the column names (case-insensitive), as `settings` for
    `configure`: prompt/answer always, system/parent/rejected when a column fits."""
    kind = _guessing_for(problem_type)
    names = _ColumnPicker(columns)
    system = names.pick(SYSTEM_NAMES)
    parent = names.pick(PARENT_NAMES) if kind.chains and names.has("id") else None
    rejected = names.pick(REJECTED_NAMES) if kind.needs_pairs else None
    prompt = names.pick(LABEL_PROMPT_NAMES if kind.has_head else PROMPT_NAMES)
    answer_names = (
        LABEL_NAMES if kind.has_head else DPO_ANSWER_NAMES if kind.needs_pairs else ANSWER_NAMES
    )
    answer = names.pick(answer_names)
    prompt = prompt or names.fallback()
    answer = answer or names.fallback()
    if kind.needs_pairs:
        rejected = rejected or names.fallback()
    found = {
        "rejected_answer_column": rejected,
        "prompt_column": [prompt] if prompt else None,
        "answer_column": [answer] if kind.has_head and answer else answer,
        "system_column": system,
        "parent_id_column": parent,
    }
    return {key: value for key, value in found.items() if value}


def _guessing_for(problem_type: str) -> ProblemType:
    try:
        return problem_type_named(problem_type)
    except ConfigError:  # a guess is only a guess: the default type's serves an unknown name
        return problem_type_named(DEFAULT_PROBLEM_TYPE)


# --- checking the chosen settings ---


def as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def column_settings(cfg: BaseConfig) -> list[tuple[str, list[str]]]:
    """(setting key, columns it needs) for every column setting of the dataset section."""
    ds: Any = cfg.dataset  # fields vary by problem type; its descriptor says which exist
    kind = problem_type_of(cfg)
    prompt = as_list(ds.prompt_column)
    if not prompt:
        raise DatasetImportError("dataset.prompt_column: choose at least one prompt column")
    answer = as_list(ds.answer_column)
    if not answer:
        raise DatasetImportError("dataset.answer_column: choose the answer column")
    needed = [("dataset.prompt_column", prompt), ("dataset.answer_column", answer)]
    if ds.system_column:
        needed.append(("dataset.system_column", [ds.system_column]))
    if kind.chains and ds.parent_id_column:
        needed.append(("dataset.parent_id_column", [ds.parent_id_column, "id"]))
    if kind.needs_pairs:
        needed += _pair_columns(ds)
    return needed


def _pair_columns(ds: Any) -> list[tuple[str, list[str]]]:
    if not ds.rejected_answer_column:
        raise DatasetImportError(
            "dataset.rejected_answer_column: choose the rejected answer column"
        )
    needed = [("dataset.rejected_answer_column", [ds.rejected_answer_column])]
    if ds.rejected_prompt_column:
        needed.append(("dataset.rejected_prompt_column", [ds.rejected_prompt_column]))
    return needed


def check_columns(df: pd.DataFrame, cfg: BaseConfig, source: str) -> None:
    for key, columns in column_settings(cfg):
        for column in columns:
            if column not in df.columns:
                raise DatasetImportError(
                    f"{source}: column {column!r} ({key}) not found; "
                    f"the file has columns {list(df.columns)}"
                )


def apply_settings(cfg: BaseConfig, settings: Mapping[str, Any]) -> None:
    ds = cfg.dataset
    hints = field_types(type(ds))
    fields = {f.name: f for f in dataclasses.fields(ds)}
    for raw_key, value in settings.items():
        key = raw_key[len("dataset.") :] if raw_key.startswith("dataset.") else raw_key
        if key in _DATAFRAME_KEYS:
            raise DatasetImportError(
                f"dataset.{key}: set through the train/validation dataframe choice"
            )
        if key not in fields:
            raise DatasetImportError(f"dataset.{key}: no such setting for {cfg.problem_type}")
        try:
            setattr(ds, key, coerce(f"dataset.{key}", value, hints[key], spec_of(fields[key])))
        except ConfigError as exc:
            raise DatasetImportError(str(exc)) from None


# --- the service ---


def check_dataframe_choice(files: DataFiles, train: str, validation: str | None) -> str | None:
    """The validation dataframe (None for none) after checking the train/validation choice."""
    if not train:
        raise DatasetImportError("dataset.train_dataframe: choose the train dataframe")
    if train not in files.dataframes:
        raise DatasetImportError(
            f"dataset.train_dataframe: {train!r} is not one of {files.dataframes}"
        )
    if validation in ("", "None"):
        return None
    if validation is not None:
        if validation not in files.dataframes:
            raise DatasetImportError(
                f"dataset.validation_dataframe: {validation!r} is not one of {files.dataframes}"
            )
        if validation == train:
            raise DatasetImportError(
                "dataset.validation_dataframe: choose a file other than the train dataframe"
            )
    return validation
