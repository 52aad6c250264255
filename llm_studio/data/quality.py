"""Checks of the text a problem type trains on, shared by the import wizard and train.py.

A file whose answers are all empty would train to "finished" on nothing: it is refused.
Some empty answers are allowed (a chain may end on one) but counted, so the import wizard
can show them before the user continues.
"""

from __future__ import annotations

import pandas as pd

from llm_studio.data.readers import DataError, empty_rows, listing


def _text_columns(ds) -> list[tuple[str, str]]:
    """(setting key, column) of the answer columns holding text (label types have numbers)."""
    out = []
    answer = getattr(ds, "answer_column", None)
    if isinstance(answer, str) and answer:
        out.append(("dataset.answer_column", answer))
    rejected = getattr(ds, "rejected_answer_column", None)
    if rejected:
        out.append(("dataset.rejected_answer_column", rejected))
    return out


def check_answers(df: pd.DataFrame, ds, source: str) -> list[str]:
    """Refuse a file whose answer column is empty in every row; return one warning per
    answer column that is empty in some rows (with the count and the first rows)."""
    warnings = []
    for key, column in _text_columns(ds):
        if column not in df.columns:
            continue  # the column checks name it
        rows = empty_rows(df[column]).tolist()
        if len(rows) == len(df):
            raise DataError(
                f"{source}: column {column!r} ({key}) is empty in all {len(df)} rows; "
                "there is nothing to train on"
            )
        if rows:
            shown = listing([str(r) for r in rows])
            warnings.append(
                f"{source}: {len(rows)} of {len(df)} rows have an empty {column!r} "
                f"({key}): row{'s' if len(rows) > 1 else ''} {shown}"
            )
    return warnings
