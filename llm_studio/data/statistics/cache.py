"""Statistics and row counts of dataframe files, cached as JSON next to the dataset.

An entry is keyed by the file's path, size and modification time and by what was asked (the
column settings, the tokenizer, the bins): a changed file or setting computes afresh and
replaces the entry. Entries are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from llm_studio.atomic import write_text_atomic
from llm_studio.data.readers import DataError, read_dataframe
from llm_studio.data.statistics.frame import TOKEN_ROWS_LIMIT, columns_used, frame_statistics
from llm_studio.data.statistics.measures import DEFAULT_BINS, tokenizer_name
from llm_studio.data.statistics.results import DatasetStatistics

# 2: whole-number bins; 3: words split on Unicode whitespace, as Python's str.split does
STATS_VERSION = 3


def _settings_key(dataset_cfg) -> dict[str, Any]:
    key: dict[str, Any] = {k: v for k, v in columns_used(dataset_cfg).items() if k != "id"}
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
        "tokenizer": tokenizer_name(tokenizer),
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
