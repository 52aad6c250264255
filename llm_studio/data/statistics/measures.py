"""Vectorized measures of text columns (pyarrow + numpy): characters, words, tokens, and the
histograms and quantiles of such lengths.

No torch or transformers at import time: a tokenizer is loaded inside `load_tokenizer` only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from llm_studio.data.statistics.results import Histogram, LengthDistribution

DEFAULT_BINS = 20
_QUANTILES = (50, 95, 99)
_TOKEN_BATCH = 4096
# Words are counted this many rows at a time: splitting makes one string per word, and a
# million long rows at once would hold them all in memory.
_WORD_ROWS = 1 << 16


def text_array(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """A large_string arrow array of the values; missing values are nulls, others `str(v)`."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        arr = values
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            try:
                arr = pc.cast(arr, pa.large_string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                arr = pa.array(
                    [None if v is None else str(v) for v in arr.to_pylist()],
                    type=pa.large_string(),
                )
    else:
        arr = _series_text(values)
    if pa.types.is_string(arr.type):
        arr = arr.cast(pa.large_string())
    return arr


def _series_text(values) -> pa.Array:
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        arr = None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr is not None and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return arr
    if arr is not None and (
        pa.types.is_integer(arr.type)
        or pa.types.is_floating(arr.type)
        or pa.types.is_boolean(arr.type)
        or pa.types.is_null(arr.type)
    ):
        return pc.cast(arr, pa.large_string())
    # mixed or nested objects: their Python text
    return pa.array([None if _is_missing(v) else str(v) for v in values], type=pa.large_string())


def _is_missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, dicts, arrays
        return False


def char_lengths(arr: pa.Array) -> np.ndarray:
    """Characters (code points) per value; nulls give 0."""
    lengths = pc.fill_null(pc.utf8_length(arr), 0)
    return lengths.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def word_counts(arr) -> np.ndarray:
    """Whitespace-separated words per value, as Python's `len(text.split())` counts them
    (Unicode whitespace); nulls give 0."""
    arr = text_array(arr)
    out = np.zeros(len(arr), dtype=np.int64)
    for start in range(0, len(arr), _WORD_ROWS):
        # Trimmed first: arrow's split gives an empty first/last piece for leading/trailing space.
        trimmed = pc.utf8_trim_whitespace(arr.slice(start, _WORD_ROWS))
        words = pc.list_value_length(pc.utf8_split_whitespace(trimmed))
        words = pc.if_else(pc.equal(pc.binary_length(trimmed), 0), 0, words)  # "" splits to [""]
        out[start : start + len(trimmed)] = pc.fill_null(words, 0).to_numpy(zero_copy_only=False)
    return out


def histogram(values: np.ndarray, bins: int = DEFAULT_BINS) -> Histogram:
    """At most `bins` bins of one whole-number width (the last may be narrower), from the
    smallest length to the largest: a column of one length gives one bin, and no bin falls
    between two whole numbers."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return Histogram(counts=[0], edges=[0.0, 1.0])
    lo, hi = int(values.min()), int(values.max())
    width = max(1, -(-(hi - lo + 1) // bins))
    n = -(-(hi - lo + 1) // width)
    counts = np.bincount((values - lo) // width, minlength=n)
    edges = lo + width * np.arange(n + 1)
    edges[-1] = hi + 1  # the last bin may be narrower: it ends at the largest length
    return Histogram(counts=[int(c) for c in counts], edges=[float(e) for e in edges])


def distribution(field_name: str, unit: str, values: np.ndarray, bins: int) -> LengthDistribution:
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return LengthDistribution(field_name, unit, 0, 0.0, 0, 0, {}, histogram(values, bins))
    qs = np.percentile(values, _QUANTILES)
    return LengthDistribution(
        field=field_name,
        unit=unit,
        rows=int(values.size),
        mean=float(values.mean()),
        min=int(values.min()),
        max=int(values.max()),
        quantiles={f"{q}%": float(v) for q, v in zip(_QUANTILES, qs, strict=True)},
        histogram=histogram(values, bins),
    )


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer  # lazy: the UI must not import transformers at start

    return AutoTokenizer.from_pretrained(str(path), use_fast=True)


def token_lengths(tokenizer, texts: list[str]) -> np.ndarray:
    """Tokens per text, without special tokens; a fast tokenizer encodes whole batches in Rust."""
    out = np.zeros(len(texts), dtype=np.int64)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
        encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
        for start in range(0, len(texts), _TOKEN_BATCH):
            batch = texts[start : start + _TOKEN_BATCH]
            out[start : start + len(batch)] = [
                len(e.ids) for e in encode(batch, add_special_tokens=False)
            ]
        return out
    for start in range(0, len(texts), _TOKEN_BATCH):  # a slow (Python) tokenizer
        batch = texts[start : start + _TOKEN_BATCH]
        ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
        out[start : start + len(batch)] = [len(i) for i in ids]
    return out


def tokenizer_name(tokenizer) -> str | None:
    if tokenizer is None:
        return None
    if isinstance(tokenizer, (str, Path)):
        return str(tokenizer)
    return str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__))
