"""Answer columns as numbers: class ids (classification) or targets (regression), checked
row by row so a bad value is reported with its column and row instead of failing in training.

Rows are counted from 0, in the order of the file, as in the other data errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from llm_studio.data.conversations import ConversationColumns
from llm_studio.data.readers import DataError

KEY = "dataset.answer_column"


def answer_columns(dataset_cfg) -> list[str]:
    """The label columns of a head's dataset section (a single name counts as one)."""
    columns = dataset_cfg.answer_column
    if not columns:
        return []
    return [columns] if isinstance(columns, str) else [str(c) for c in columns]


def prompt_columns(dataset_cfg) -> ConversationColumns:
    """How a head reads a row as a conversation: its prompt and system columns, no chains. The
    first label column stands in for the answer, whose text is never rendered: the prompts end
    at the answer separator."""
    labels = answer_columns(dataset_cfg)
    return ConversationColumns(
        prompt_column=tuple(dataset_cfg.prompt_column),
        prompt_column_separator=dataset_cfg.prompt_column_separator,
        answer_column=labels[0] if labels else "",
        system_column=dataset_cfg.system_column,
    )


def check_answer_columns(df: pd.DataFrame, columns: list[str], source: str) -> None:
    if not columns:
        raise DataError(f"{source}: {KEY} names no column")
    for column in columns:
        if column not in df.columns:
            raise DataError(
                f"{source}: column {column!r} ({KEY}) not found; "
                f"the file has columns {list(df.columns)}"
            )


def _shown(value) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _numbers(df: pd.DataFrame, column: str, source: str, what: str, rule: str) -> np.ndarray:
    """The column as float64; a missing or non-numeric value is refused with its row."""
    raw = df[column]
    if raw.dtype == bool:
        raw = raw.astype(int)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    missing = raw.isna().to_numpy()
    for row in np.flatnonzero(missing | np.isnan(values))[:1]:
        if missing[row]:
            raise DataError(f"{source}: {KEY} {column!r}: row {row} has no {what}")
        raise DataError(
            f"{source}: {KEY} {column!r}: row {row} holds {_shown(raw.iloc[row])}, "
            f"which is not a number; {rule}"
        )
    for row in np.flatnonzero(~np.isfinite(values))[:1]:
        raise DataError(
            f"{source}: {KEY} {column!r}: row {row} holds {_shown(raw.iloc[row])}; {rule}"
        )
    return values


def class_labels(
    df: pd.DataFrame, columns: list[str], source: str, multi_label: bool
) -> np.ndarray:
    """Integer class ids, one column per answer column (n_rows x n_columns, int64).

    A class id is a whole number from 0 up (1.0 counts as 1: numeric columns with gaps come
    back as floats); a multi-label column holds 0 or 1.
    """
    check_answer_columns(df, columns, source)
    out = np.zeros((len(df), len(columns)), dtype=np.int64)
    for j, column in enumerate(columns):
        rule = (
            "multi-label columns hold 0 or 1"
            if multi_label
            else "classification labels are whole class ids 0, 1, 2, ..."
        )
        values = _numbers(df, column, source, "label", rule)
        for row in np.flatnonzero(values != np.floor(values))[:1]:
            raise DataError(
                f"{source}: {KEY} {column!r}: row {row} holds the float "
                f"{_shown(df[column].iloc[row])}; {rule}"
            )
        for row in np.flatnonzero(values < 0)[:1]:
            raise DataError(
                f"{source}: {KEY} {column!r}: row {row} holds the negative label "
                f"{_shown(df[column].iloc[row])}; {rule}"
            )
        if multi_label:
            for row in np.flatnonzero(values > 1)[:1]:
                raise DataError(
                    f"{source}: {KEY} {column!r}: row {row} holds {_shown(df[column].iloc[row])}; "
                    f"{rule}"
                )
        out[:, j] = values.astype(np.int64)
    return out


def regression_targets(df: pd.DataFrame, columns: list[str], source: str) -> np.ndarray:
    """Float targets, one column per answer column (n_rows x n_columns, float64)."""
    check_answer_columns(df, columns, source)
    out = np.zeros((len(df), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        out[:, j] = _numbers(df, column, source, "target", "regression targets are finite numbers")
    return out


def infer_num_classes(labels: np.ndarray, multi_label: bool) -> int:
    """Multi-label: one class per answer column. Otherwise the largest id + 1, at least 2."""
    if multi_label:
        return labels.shape[1]
    return max(int(labels.max(initial=0)) + 1, 2)


def check_class_range(
    labels: np.ndarray, num_classes: int, columns: list[str], source: str, why: str
) -> None:
    """Every single-label class id must be below num_classes; `why` says where that came from."""
    for row in np.flatnonzero(labels[:, 0] >= num_classes)[:1]:
        raise DataError(
            f"{source}: {KEY} {columns[0]!r}: row {row} holds class {int(labels[row, 0])}, "
            f"but there are {num_classes} classes ({why})"
        )
