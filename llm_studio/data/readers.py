"""Read dataframes from csv, parquet and json files, with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd


class DataError(ValueError):
    """Data that cannot be used; the message names the file, column or row."""


def _read_json(path: Path) -> pd.DataFrame:
    lines = path.suffix.lower() == ".jsonl"
    if not lines:
        # A .json file may hold one record per line too; try the array form first.
        try:
            return pd.read_json(path)
        except ValueError:
            pass
    return pd.read_json(path, lines=True)


READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": lambda p: pd.read_csv(p, keep_default_na=False, na_values=[""]),
    ".pq": pd.read_parquet,
    ".parquet": pd.read_parquet,
    ".json": _read_json,
    ".jsonl": _read_json,
}


def read_dataframe(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use {', '.join(READERS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        df = READERS[suffix](path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except Exception as exc:  # pandas/pyarrow raise many types for a broken file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {suffix[1:]}: {reason}") from None
    if len(df) == 0:
        raise DataError(f"{path}: the file has no rows")
    df.columns = [str(c) for c in df.columns]
    return df
