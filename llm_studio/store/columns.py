"""The dataset section's column settings: guesses from file and column names (`suggest_*`),
and the checks of what the user chose (`apply_settings`, `check_columns`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from llm_studio.config.problem_types import BaseConfig
from llm_studio.config.settings import ConfigError, coerce, field_types, spec_of
from llm_studio.store.import_types import DPO, LABEL_TYPES, DataFiles, DatasetImportError

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
    """Hands out columns by name (case-insensitive), each at most once."""

    def __init__(self, columns: Iterable[str]) -> None:
        self.columns = [str(c) for c in columns]
        self.by_lower: dict[str, str] = {}  # the first column of each lower-case name
        for c in self.columns:
            self.by_lower.setdefault(c.lower(), c)
        self.used: set[str] = set()

    def has(self, lower_name: str) -> bool:
        return lower_name in self.by_lower

    def pick(self, candidates: Iterable[str]) -> str | None:
        """The first unused column named like one of `candidates`, in their order."""
        for cand in candidates:
            column = self.by_lower.get(cand)
            if column is not None and column not in self.used:
                self.used.add(column)
                return column
        return None

    def fallback(self) -> str | None:
        """The first unused column in file order, other than an `id` column."""
        for c in self.columns:
            if c not in self.used and c.lower() != "id":
                self.used.add(c)
                return c
        return None


def _answer_names(problem_type: str) -> tuple[str, ...]:
    if problem_type in LABEL_TYPES:
        return LABEL_NAMES
    return DPO_ANSWER_NAMES if problem_type == DPO else ANSWER_NAMES


def suggest_columns(problem_type: str, columns: Iterable[str]) -> dict[str, Any]:
    """Column settings guessed from the column names (case-insensitive), as `settings` for
    `configure`: prompt/answer always, system/parent/rejected when a column fits."""
    picker = _ColumnPicker(columns)
    labels, dpo = problem_type in LABEL_TYPES, problem_type == DPO
    # Named columns first, in this order of precedence; then the rest by position.
    system = picker.pick(SYSTEM_NAMES)
    parent = picker.pick(PARENT_NAMES) if not labels and picker.has("id") else None
    rejected = picker.pick(REJECTED_NAMES) if dpo else None
    prompt = picker.pick(LABEL_PROMPT_NAMES if labels else PROMPT_NAMES)
    answer = picker.pick(_answer_names(problem_type))
    prompt = prompt or picker.fallback()
    answer = answer or picker.fallback()
    if dpo:
        rejected = rejected or picker.fallback()
    guessed = {
        "rejected_answer_column": rejected,
        "prompt_column": [prompt] if prompt else None,
        "answer_column": [answer] if labels and answer else answer,
        "system_column": system,
        "parent_id_column": parent,
    }
    return {key: value for key, value in guessed.items() if value}


# --- checking the chosen settings ---


def as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def column_settings(ds: Any) -> list[tuple[str, list[str]]]:
    """(setting key, columns it needs) for every column setting of a dataset section."""
    prompt = as_list(ds.prompt_column)
    if not prompt:
        raise DatasetImportError("dataset.prompt_column: choose at least one prompt column")
    answer = as_list(ds.answer_column)
    if not answer:
        raise DatasetImportError("dataset.answer_column: choose the answer column")
    needed = [("dataset.prompt_column", prompt), ("dataset.answer_column", answer)]
    if getattr(ds, "system_column", None):
        needed.append(("dataset.system_column", [ds.system_column]))
    if getattr(ds, "parent_id_column", None):
        needed.append(("dataset.parent_id_column", [ds.parent_id_column, "id"]))
    if hasattr(ds, "rejected_answer_column"):
        if not ds.rejected_answer_column:
            raise DatasetImportError(
                "dataset.rejected_answer_column: choose the rejected answer column"
            )
        needed.append(("dataset.rejected_answer_column", [ds.rejected_answer_column]))
    if getattr(ds, "rejected_prompt_column", None):
        needed.append(("dataset.rejected_prompt_column", [ds.rejected_prompt_column]))
    return needed


def check_columns(df: pd.DataFrame, ds: Any, source: str) -> None:
    for key, columns in column_settings(ds):
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
