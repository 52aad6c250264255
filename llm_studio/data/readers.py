"""Read dataframes from csv, parquet and json files, with errors that name the file.

Every reader path (imports, the dataset pages, train.py) goes through `read_dataframe`, so the
same rules hold everywhere: a csv row with more fields than the header, duplicate column
names, NUL characters and cells over `max_cell_chars()` are refused, naming the file, row
(counted from 0, as in the other data errors) and column.
"""

from __future__ import annotations

import codecs
import csv
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from llm_studio.env import setting_env

MAX_CELL_CHARS = 1_000_000  # far beyond any backbone's context; keeps memory bounded
MAX_CELL_ENV = "H2O_LLM_STUDIO_MAX_CELL_CHARS"
SHOWN = 3  # problems named in one message; the rest are counted


class DataError(ValueError):
    """Data that cannot be used; the message names the file, column or row."""


def max_cell_chars() -> int:
    raw = (setting_env(MAX_CELL_ENV) or "").strip()
    if not raw:
        return MAX_CELL_CHARS
    if not raw.isdigit() or int(raw) <= 0:
        raise DataError(f"{MAX_CELL_ENV}: got {raw!r}, expected a positive number")
    return int(raw)


def listing(items: list[str], total: int | None = None) -> str:
    """The first few items and how many more: one line however many there are."""
    total = len(items) if total is None else total
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {total - SHOWN} more" if total > SHOWN else "")


def _read_json(path: Path) -> pd.DataFrame:
    lines = path.suffix.lower() == ".jsonl"
    if not lines:
        # A .json file may hold one record per line too; try the array form first.
        try:
            return pd.read_json(path)
        except ValueError:
            pass
    return pd.read_json(path, lines=True)


def _csv_header(path: Path) -> list[str]:
    # The csv module's own cap (128 KiB) is below ours; ours is checked on the bytes.
    csv.field_size_limit(max(csv.field_size_limit(), 4 * max_cell_chars()))
    with open(path, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), [])


def _read_csv(path: Path) -> pd.DataFrame:
    header = _csv_header(path)
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DataError(f"{path}: the header names column(s) {dupes} more than once")
    has_nul = _scan_bytes(path, len(header))
    # index_col=False: pandas would otherwise take the extra leading fields of a long first
    # row as an index and shift the rest into the columns; long rows are found below.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = pd.read_csv(
            path, keep_default_na=False, na_values=[""], index_col=False, on_bad_lines="warn"
        )
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        _refuse_long_rows(path, len(header))
    df.attrs["may_hold_nul"] = has_nul
    return df


def _scan_bytes(path: Path, columns: int) -> bool:
    """Refuse a line too long to hold cells within the limit before pandas loads it whole;
    return whether the file holds a NUL byte at all (the per-cell search is slow)."""
    limit = 4 * max_cell_chars() * max(columns, 1) + 1024  # 4: the longest UTF-8 character
    has_nul, line, run = False, 0, 0  # run: bytes of the current line seen so far

    def refuse(at: int) -> None:
        raise DataError(
            f"{path}: line {at} is longer than {limit} bytes: a cell holds more than the "
            f"limit of {max_cell_chars()} characters (set {MAX_CELL_ENV} to change it)"
        )

    with open(path, "rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            has_nul = has_nul or b"\x00" in chunk
            ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            if len(ends) == 0:
                run += len(chunk)
                if run > limit:
                    refuse(line + 1)
                continue
            if run + ends[0] > limit:
                refuse(line + 1)
            inner = np.diff(ends) - 1
            if len(inner) and inner.max() > limit:
                refuse(line + 2 + int(inner.argmax()))
            line += len(ends)
            run = len(chunk) - int(ends[-1]) - 1
    if run > limit:
        refuse(line + 1)
    return has_nul


def _refuse_long_rows(path: Path, columns: int) -> None:
    bad = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for row, fields in enumerate(reader):
            if len(fields) > columns:
                bad.append(f"row {row} (line {reader.line_num}) has {len(fields)} fields")
    if not bad:  # pandas warned for another reason: say what it said
        raise DataError(f"{path}: cannot be read as csv: its rows do not match the header")
    raise DataError(
        f"{path}: {len(bad)} row(s) have more fields than the {columns} of the header, so "
        f"values would shift into other columns: {listing(bad)}; quote fields holding commas"
    )


READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": _read_csv,
    ".pq": pd.read_parquet,
    ".parquet": pd.read_parquet,
    ".json": _read_json,
    ".jsonl": _read_json,
}


def _utf8_error(path: Path) -> str:
    """Where the first invalid UTF-8 byte is, counted from the start of the file (pandas
    reports the offset inside the chunk it was decoding)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1024 * 1024)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # The decoder may hold back up to 3 bytes of the previous chunk.
                held = len(exc.object) - len(chunk)
                at = offset - held + exc.start
                line += exc.object[: exc.start].count(b"\n")
                return f"{exc.reason} at byte {at}, line {line}"
            if not chunk:
                return "invalid UTF-8"
            offset += len(chunk)
            line += chunk.count(b"\n")


def _arrow_text(values: pd.Series) -> pa.ChunkedArray | pa.Array | None:
    """The column as arrow strings (no copy for pandas' arrow-backed strings), or None."""
    try:
        text = pa.array(values, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):  # mixed objects
        return None
    return text if pa.types.is_string(text.type) or pa.types.is_large_string(text.type) else None


def _check_cells(df: pd.DataFrame, path: Path) -> None:
    dupes = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if dupes:
        raise DataError(f"{path}: column(s) {dupes} appear more than once")
    limit = max_cell_chars()
    # Both searches are slow on a million rows: skip what the file's bytes already rule out
    # (no cell is longer than the file; a csv without a NUL byte has no NUL character).
    check_length = path.stat().st_size > limit
    check_nul = df.attrs.pop("may_hold_nul", True)
    if not (check_length or check_nul):
        return
    nul: list[tuple[int, str]] = []
    nul_total = 0
    for column in df.columns:
        values = df[column]
        if values.dtype != object and not pd.api.types.is_string_dtype(values):
            continue
        text = _arrow_text(values)
        if text is None:  # a column without text (numbers, lists)
            continue
        # Bytes are at least characters and cost nothing to count (arrow keeps offsets).
        if check_length and (pc.max(pc.binary_length(text)).as_py() or 0) > limit:
            lengths = values.str.len().fillna(0).to_numpy()
            row = int(lengths.argmax())
            raise DataError(
                f"{path}: column {column!r}, row {row} holds {int(lengths[row])} "
                f"characters, more than the limit of {limit} (set {MAX_CELL_ENV} to change it)"
            )
        if not check_nul:
            continue
        has_nul = pc.fill_null(pc.match_substring(text, "\x00"), False)
        rows = np.flatnonzero(np.asarray(has_nul, dtype=bool))
        nul_total += len(rows)
        nul += [(int(r), column) for r in rows[:SHOWN]]
    if nul_total:
        raise DataError(
            f"{path}: {nul_total} cell(s) hold NUL characters (a binary or broken file?): "
            f"{listing([f'row {r} column {c!r}' for r, c in sorted(nul)], nul_total)}"
        )


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
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text ({_utf8_error(path)})") from None
    except Exception as exc:  # pandas/pyarrow raise many types for a broken file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {suffix[1:]}: {reason}") from None
    if len(df) == 0:
        raise DataError(f"{path}: the file has no rows")
    df.columns = [str(c) for c in df.columns]
    _check_cells(df, path)
    return df


def empty_rows(values: pd.Series) -> np.ndarray:
    """Positions of values that are missing, empty or only whitespace."""
    missing = values.isna().to_numpy(dtype=bool)
    text = _arrow_text(values)
    if text is None:  # numbers: empty only when missing
        return np.flatnonzero(missing)
    blank = pc.or_(pc.equal(pc.binary_length(text), 0), pc.utf8_is_space(text))
    return np.flatnonzero(missing | np.asarray(pc.fill_null(blank, False), dtype=bool))
