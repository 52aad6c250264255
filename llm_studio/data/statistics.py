"""Dataset statistics for the "View datasets" page: per-column numbers, prompt/answer length
histograms (in words, optionally in tokens) and the Summary tab, cached as JSON.

Everything here is vectorized (pyarrow + numpy): a million rows with two text columns take a
few seconds. Words are runs of non-whitespace (ASCII space, \\t \\n \\v \\f \\r), counted over
the UTF-8 bytes directly, which is about ten times faster than a regular expression.

No torch or transformers at import time: a tokenizer is loaded inside `token_lengths` only.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from llm_studio.atomic import write_text_atomic
from llm_studio.data.readers import DataError, read_dataframe

STATS_VERSION = 2  # 2: whole-number bins
DEFAULT_BINS = 20
# Token counts beyond this many rows come from a fixed random sample of rows (see `rows`).
TOKEN_ROWS_LIMIT = 100_000
_TOKEN_BATCH = 4096
_CHUNK_BYTES = 1 << 24  # word counting works through the text in pieces of this size
_QUANTILES = (50, 95, 99)

# --- result types --------------------------------------------------------------------------------


@dataclass
class Histogram:
    """`counts[i]` values fall in [edges[i], edges[i + 1]). Lengths are whole numbers and the
    edges too, so bin i holds the lengths edges[i] .. edges[i + 1] - 1."""

    counts: list[int]
    edges: list[float]

    def bars(self) -> list[tuple[str, int]]:
        """(label, count) per bin for a chart: "7" for a bin of one length, else "10–14"."""
        out = []
        for i, count in enumerate(self.counts):
            lo, hi = int(self.edges[i]), int(self.edges[i + 1]) - 1
            out.append((str(lo) if hi <= lo else f"{lo}–{hi}", int(count)))
        return out


@dataclass
class TextLengths:
    """Lengths of a text column's non-missing values."""

    chars_mean: float | None
    chars_min: int | None
    chars_max: int | None
    words_mean: float | None
    words_min: int | None
    words_max: int | None


@dataclass
class ColumnStatistics:
    name: str
    dtype: str
    count: int  # non-missing values
    missing: int
    unique: int  # distinct non-missing values
    min: float | None = None  # numeric columns only
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    text: TextLengths | None = None  # text columns only


@dataclass
class LengthDistribution:
    """Per-row lengths of one field of the samples, in words or tokens.

    Fields: `system`, `prompt` (the prompt columns joined as training joins them), `answer`,
    `rejected_prompt` / `rejected_answer` (DPO) and `total` (system + prompt + answer of the
    row; the prompt format's extra text and earlier turns of a chain are not counted). A missing
    cell counts as empty text (0), as in training.
    """

    field: str
    unit: str  # "words" | "tokens"
    rows: int  # rows measured (tokens: a sample when the frame is large)
    mean: float
    min: int
    max: int
    quantiles: dict[str, float]  # "50%", "95%", "99%"
    histogram: Histogram


@dataclass
class DatasetStatistics:
    path: str
    rows: int
    columns: list[ColumnStatistics]
    lengths: list[LengthDistribution]
    columns_used: dict[str, list[str]]
    tokenizer: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # time the computation took
    cached: bool = False  # True when read back from the cache (not stored in it)

    def column(self, name: str) -> ColumnStatistics:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def length(self, field_name: str, unit: str = "words") -> LengthDistribution | None:
        for d in self.lengths:
            if d.field == field_name and d.unit == unit:
                return d
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetStatistics:
        columns = []
        for c in data["columns"]:
            c = dict(c)
            text = c.pop("text", None)
            columns.append(ColumnStatistics(**c, text=TextLengths(**text) if text else None))
        lengths = []
        for d in data["lengths"]:
            d = dict(d)
            hist = Histogram(**d.pop("histogram"))
            lengths.append(LengthDistribution(**d, histogram=hist))
        rest = {k: v for k, v in data.items() if k not in ("columns", "lengths")}
        return cls(columns=columns, lengths=lengths, **rest)


# --- vectorized text measures -------------------------------------------------------------------


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
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            arr = None
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            if arr is not None and (
                pa.types.is_integer(arr.type)
                or pa.types.is_floating(arr.type)
                or pa.types.is_boolean(arr.type)
                or pa.types.is_null(arr.type)
            ):
                arr = pc.cast(arr, pa.large_string())
            else:  # mixed or nested objects: their Python text
                arr = pa.array(
                    [None if _is_missing(v) else str(v) for v in values], type=pa.large_string()
                )
    if pa.types.is_string(arr.type):
        arr = arr.cast(pa.large_string())
    return arr


def _is_missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, dicts, arrays
        return False


def char_lengths(arr: pa.Array) -> np.ndarray:
    """Characters (code points) per value; nulls give 0."""
    lengths = pc.fill_null(pc.utf8_length(arr), 0)
    return lengths.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def word_counts(arr: pa.Array) -> np.ndarray:
    """Whitespace-separated words per value (like `len(text.split())` for ASCII whitespace);
    nulls give 0. Works on the UTF-8 bytes in chunks: a word starts at a non-space byte that
    follows a space byte or starts its value."""
    arr = text_array(arr)
    n = len(arr)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    if data_buf is None or offsets[-1] == offsets[0]:
        return out
    data = np.frombuffer(data_buf, dtype=np.uint8)
    nine, five = np.uint8(9), np.uint8(5)
    i = 0
    while i < n:
        j = int(np.searchsorted(offsets, offsets[i] + _CHUNK_BYTES, side="right")) - 1
        j = min(max(j, i + 1), n)
        lo = offsets[i]
        chunk = data[lo : offsets[j]]
        solid = (chunk != 32) & ((chunk - nine) >= five)  # not ' ' and not \t \n \v \f \r
        starts = solid.copy()
        starts[1:] &= ~solid[:-1]
        bounds = offsets[i : j + 1] - lo
        firsts = bounds[:-1]
        firsts = firsts[firsts < len(chunk)]
        starts[firsts] = solid[firsts]  # a value's first byte never continues the previous one
        positions = np.flatnonzero(starts)
        out[i:j] = np.diff(np.searchsorted(positions, bounds))
        i = j
    if arr.null_count:
        out[~pc.is_valid(arr).to_numpy(zero_copy_only=False)] = 0
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
        quantiles={f"{q}%": float(v) for q, v in zip(_QUANTILES, qs)},
        histogram=histogram(values, bins),
    )


# --- columns -------------------------------------------------------------------------------------


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


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


def _as_list(value) -> list[str]:
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
        columns = _as_list(getattr(dataset_cfg, key, None))
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
        wanted = _as_list(value)
        if not wanted:
            continue
        absent = [c for c in wanted if c not in columns]
        if absent:
            warnings.append(f"dataset.{key}: column(s) {absent} not found")
            continue
        fields[name] = wanted
    return fields


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


# --- tokens ----------------------------------------------------------------------------------------


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


def _tokenizer_name(tokenizer) -> str | None:
    if tokenizer is None:
        return None
    if isinstance(tokenizer, (str, Path)):
        return str(tokenizer)
    return str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__))


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
        tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
        rows = np.arange(len(df))
        if token_rows is not None and len(df) > token_rows:
            rows = np.sort(np.random.default_rng(seed).choice(len(df), token_rows, replace=False))
        taken = pa.array(rows)
        tokens = {
            name: token_lengths(tok, _field_text(measures, cols, sep).take(taken).to_pylist())
            for name, cols in fields.items()
        }
        lengths += [
            distribution(name, "tokens", v, bins) for name, v in _with_total(tokens).items()
        ]

    return DatasetStatistics(
        path=path,
        rows=len(df),
        columns=columns,
        lengths=lengths,
        columns_used=columns_used(dataset_cfg),
        tokenizer=_tokenizer_name(tokenizer),
        warnings=warnings,
        seconds=time.perf_counter() - started,
    )


def _settings_key(dataset_cfg) -> dict[str, Any]:
    key = {k: v for k, v in columns_used(dataset_cfg).items() if k != "id"}
    key["prompt_column_separator"] = getattr(dataset_cfg, "prompt_column_separator", None)
    return key


def _file_key(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_file(cache_dir: Path, prefix: str, identity: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache_dir) / f"{prefix}-{digest}.json"


def _read_cache(cache_file: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        stored = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        return None
    return stored.get("value")


def _write_cache(cache_file: Path, key: dict[str, Any], value: Any) -> None:
    text = json.dumps({"key": key, "value": value}, ensure_ascii=False, allow_nan=False)
    write_text_atomic(cache_file, text)


def dataset_statistics(
    path: Path,
    dataset_cfg,
    cache_dir: Path,
    tokenizer=None,
    bins: int = DEFAULT_BINS,
    token_rows: int | None = TOKEN_ROWS_LIMIT,
) -> DatasetStatistics:
    """Statistics of a dataframe file, cached as JSON in `cache_dir`.

    The cache entry is keyed by the file's path, size and modification time, the column
    settings, the tokenizer and the bins: a changed file or setting computes afresh (and
    replaces the entry), anything else reads the entry back (`cached` is then True).
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    identity = {
        "version": STATS_VERSION,
        "path": str(path),
        "settings": _settings_key(dataset_cfg),
        "tokenizer": _tokenizer_name(tokenizer),
        "token_rows": token_rows if tokenizer is not None else None,
        "bins": bins,
    }
    key = {**identity, "file": _file_key(path)}
    cache_file = _cache_file(cache_dir, "stats", identity)
    stored = _read_cache(cache_file, key)
    if stored is not None:
        try:
            stats = DatasetStatistics.from_dict(stored)
        except (KeyError, TypeError):
            stats = None
        if stats is not None:
            stats.cached = True
            return stats
    df = read_dataframe(path)
    stats = frame_statistics(
        df, dataset_cfg, tokenizer=tokenizer, bins=bins, token_rows=token_rows, path=str(path)
    )
    if _file_key(path) == key["file"]:  # not rewritten while we read it
        _write_cache(cache_file, key, stats.to_dict())
    return stats


# --- Summary tab ------------------------------------------------------------------------------------


def count_rows(path: Path, cache_dir: Path | None = None) -> int:
    """Rows of a dataframe file: parquet from its footer, others read once and cached."""
    path = Path(path).resolve()
    if path.suffix.lower() in (".pq", ".parquet") and path.is_file():
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except (OSError, pa.ArrowException):
            pass  # let read_dataframe say what is wrong
    if cache_dir is None:
        return len(read_dataframe(path))
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    key = {"version": STATS_VERSION, "file": _file_key(path)}
    cache_file = _cache_file(cache_dir, "rows", {"path": str(path)})
    stored = _read_cache(cache_file, key)
    if isinstance(stored, int):
        return stored
    rows = len(read_dataframe(path))
    _write_cache(cache_file, key, rows)
    return rows


@dataclass
class DatasetSummary:
    name: str
    problem_type: str
    problem_type_label: str
    train_dataframe: str
    train_rows: int | None
    validation_dataframe: str | None
    validation_rows: int | None
    validation_strategy: str
    labels: list[str]
    columns_used: dict[str, list[str]]

    def table(self) -> list[tuple[str, str]]:
        """The Summary tab's rows, as the guide lists them."""

        def shown(value) -> str:
            return "-" if value is None or value == "" else str(value)

        return [
            ("Name", self.name),
            ("Problem type", self.problem_type_label),
            ("Train dataframe", shown(self.train_dataframe)),
            ("Train rows", shown(self.train_rows)),
            ("Validation dataframe", shown(self.validation_dataframe)),
            ("Validation rows", shown(self.validation_rows)),
            ("Labels", ", ".join(self.labels) or "-"),
        ]


def _resolve(path: str) -> Path:
    from llm_studio import paths

    p = Path(path)
    return p if p.is_absolute() else paths.workdir() / p


def summary(
    name: str,
    problem_type: str,
    dataset_cfg,
    cache_dir: Path | None = None,
    train_rows: int | None = None,
    validation_rows: int | None = None,
) -> DatasetSummary:
    """The Summary tab. Rows not given are counted (relative paths are relative to the
    workdir); a file that cannot be read gives None rows rather than an error."""
    from llm_studio.config.problem_types import PROBLEM_TYPE_LABELS

    def rows(path: str | None, given: int | None) -> int | None:
        if given is not None or not path:
            return given
        try:
            return count_rows(_resolve(path), cache_dir)
        except (DataError, OSError):
            return None

    train = getattr(dataset_cfg, "train_dataframe", "") or ""
    validation = getattr(dataset_cfg, "validation_dataframe", None) or None
    if validation in ("None", "none"):
        validation = None
    return DatasetSummary(
        name=name,
        problem_type=problem_type,
        problem_type_label=PROBLEM_TYPE_LABELS.get(problem_type, problem_type),
        train_dataframe=train,
        train_rows=rows(train, train_rows),
        validation_dataframe=validation,
        validation_rows=rows(validation, validation_rows),
        validation_strategy=getattr(dataset_cfg, "validation_strategy", "automatic"),
        labels=_as_list(getattr(dataset_cfg, "answer_column", None)),
        columns_used=columns_used(dataset_cfg),
    )
