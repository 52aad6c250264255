"""Statistics of a dataframe in memory: each column's numbers, and the length distributions of
the sample fields (system, prompt, answer, ...) that the dataset settings name."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from llm_studio.data.statistics.measures import (
    DEFAULT_BINS,
    char_lengths,
    distribution,
    load_tokenizer,
    text_array,
    token_lengths,
    tokenizer_name,
    word_counts,
)
from llm_studio.data.statistics.results import ColumnStatistics, DatasetStatistics, TextLengths

# Token counts beyond this many rows come from a fixed random sample of rows (see `rows`).
TOKEN_ROWS_LIMIT = 100_000


class _Measures:
    """Each column's arrow text and word counts, computed at most once per frame."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        self._text: dict[str, pa.Array] = {}
        self._words: dict[str, np.ndarray] = {}

    def text(self, column: str) -> pa.Array:
        if column not in self._text:
            self._text[column] = text_array(self.df[column])
        return self._text[column]

    def words(self, column: str) -> np.ndarray:
        if column not in self._words:
            self._words[column] = word_counts(self.text(column))
        return self._words[column]


# --- columns -------------------------------------------------------------------------------------


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def column_statistics(
    name: str, series: pd.Series, measures: _Measures | None = None
) -> ColumnStatistics:
    missing = int(series.isna().sum())
    count = len(series) - missing
    dtype = str(series.dtype)
    kind = series.dtype
    if pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_bool_dtype(kind):
        values = series.dropna().to_numpy(dtype=np.float64)
        stats = ColumnStatistics(name, dtype, count, missing, int(series.nunique(dropna=True)))
        if values.size:
            stats.min, stats.max = _num(values.min()), _num(values.max())
            stats.mean = _num(values.mean())
            stats.std = _num(values.std(ddof=1)) if values.size > 1 else None
        return stats
    if pd.api.types.is_bool_dtype(kind) or pd.api.types.is_datetime64_any_dtype(kind):
        return ColumnStatistics(name, dtype, count, missing, int(series.nunique(dropna=True)))
    if measures is None:
        measures = _Measures(pd.DataFrame({name: series}))
    return _text_column_statistics(name, dtype, measures)


def _text_column_statistics(name: str, dtype: str, measures: _Measures) -> ColumnStatistics:
    arr = measures.text(name)
    valid_mask = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    valid = pc.drop_null(arr)
    unique = int(pc.count_distinct(valid).as_py())
    text = TextLengths(None, None, None, None, None, None)
    if len(valid):
        chars, words = char_lengths(valid), measures.words(name)[valid_mask]
        text = TextLengths(
            chars_mean=float(chars.mean()),
            chars_min=int(chars.min()),
            chars_max=int(chars.max()),
            words_mean=float(words.mean()),
            words_min=int(words.min()),
            words_max=int(words.max()),
        )
    return ColumnStatistics(name, dtype, len(valid), len(arr) - len(valid), unique, text=text)


# --- which columns the settings use ---------------------------------------------------------------


def as_list(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def columns_used(dataset_cfg) -> dict[str, list[str]]:
    """Setting name -> the columns it names, for the settings that are set."""
    used: dict[str, list[str]] = {}
    for key in (
        "system_column",
        "prompt_column",
        "answer_column",
        "parent_id_column",
        "rejected_prompt_column",
        "rejected_answer_column",
    ):
        columns = as_list(getattr(dataset_cfg, key, None))
        if columns:
            used[key] = columns
    if "parent_id_column" in used:
        used["id"] = ["id"]
    return used


def _fields(dataset_cfg, columns, warnings: list[str]) -> dict[str, list[str]]:
    """The sample fields (system, prompt, answer, rejected_*) -> the columns they are made of;
    a field whose columns are not all in the frame is left out, with a warning."""
    fields: dict[str, list[str]] = {}
    for name, key in (
        ("system", "system_column"),
        ("prompt", "prompt_column"),
        ("answer", "answer_column"),
        ("rejected_prompt", "rejected_prompt_column"),
        ("rejected_answer", "rejected_answer_column"),
    ):
        value = getattr(dataset_cfg, key, None)
        if name == "answer" and not isinstance(value, str):
            continue  # label types: the answer columns are labels, not text
        wanted = as_list(value)
        if not wanted:
            continue
        absent = [c for c in wanted if c not in columns]
        if absent:
            warnings.append(f"dataset.{key}: column(s) {absent} not found")
            continue
        fields[name] = wanted
    return fields


# --- field lengths --------------------------------------------------------------------------------


def _field_text(measures: _Measures, columns: list[str], sep: str) -> pa.Array:
    """A field's per-row text as training builds it: missing cells are "", several prompt
    columns are joined with the separator."""
    parts = [pc.fill_null(measures.text(c), "") for c in columns]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, pa.scalar(sep, pa.large_string())).cast(
        pa.large_string()
    )


def _field_words(measures: _Measures, columns: list[str], sep: str) -> np.ndarray:
    if len(columns) == 1:
        return measures.words(columns[0])  # missing cells count 0 already
    return word_counts(_field_text(measures, columns, sep))


def _with_total(lengths: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    parts = [lengths[k] for k in ("system", "prompt", "answer") if k in lengths]
    if len(parts) > 1:
        lengths["total"] = np.sum(parts, axis=0)
    return lengths


def _field_tokens(
    measures: _Measures, fields: dict[str, list[str]], sep: str, tokenizer, rows: np.ndarray
) -> dict[str, np.ndarray]:
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
    taken = pa.array(rows)
    return {
        name: token_lengths(tok, _field_text(measures, cols, sep).take(taken).to_pylist())
        for name, cols in fields.items()
    }


# --- the statistics -------------------------------------------------------------------------------


def frame_statistics(
    df: pd.DataFrame,
    dataset_cfg,
    tokenizer=None,
    bins: int = DEFAULT_BINS,
    token_rows: int | None = TOKEN_ROWS_LIMIT,
    path: str = "",
    seed: int = 0,
) -> DatasetStatistics:
    """Statistics of a dataframe in memory (no cache). `tokenizer`: a path/hub name or a loaded
    tokenizer, to add token-length distributions; with more than `token_rows` rows those come
    from a random sample of that many rows (None: every row)."""
    started = time.perf_counter()
    warnings: list[str] = []
    if not all(isinstance(c, str) for c in df.columns):
        df = df.rename(columns=str)
    measures = _Measures(df)
    columns = [column_statistics(name, df[name], measures) for name in df.columns]
    fields = _fields(dataset_cfg, set(df.columns), warnings)
    sep = getattr(dataset_cfg, "prompt_column_separator", "\n\n")

    words = _with_total({name: _field_words(measures, cols, sep) for name, cols in fields.items()})
    lengths = [distribution(name, "words", v, bins) for name, v in words.items()]

    if tokenizer is not None and fields:
        rows = np.arange(len(df))
        if token_rows is not None and len(df) > token_rows:
            rows = np.sort(np.random.default_rng(seed).choice(len(df), token_rows, replace=False))
        tokens = _field_tokens(measures, fields, sep, tokenizer, rows)
        lengths += [
            distribution(name, "tokens", v, bins) for name, v in _with_total(tokens).items()
        ]

    return DatasetStatistics(
        path=path,
        rows=len(df),
        columns=columns,
        lengths=lengths,
        columns_used=columns_used(dataset_cfg),
        tokenizer=tokenizer_name(tokenizer),
        warnings=warnings,
        seconds=time.perf_counter() - started,
    )
