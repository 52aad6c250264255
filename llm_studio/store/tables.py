"""Records as table rows: one generic `Table` reads, inserts, updates and deletes the rows of
any record class, so datasets and experiments share one implementation.

Every method works on a connection the caller holds, inside the caller's transaction (see
`Store._write`). Values are stored as plain SQLite types (`plain_value`), and constraint
failures become `StoreError`s whose message names the record.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from llm_studio.store.errors import NameTakenError, NotFoundError, StoreError
from llm_studio.store.records import DatasetRecord, ExperimentRecord

Record = TypeVar("Record", DatasetRecord, ExperimentRecord)

_PATH_FIELDS = {"path", "config_file", "train_dataframe", "validation_dataframe"}
_INT_FIELDS = {"train_rows", "validation_rows", "dataset_id", "pid"}
_FLOAT_FIELDS = {"created_at", "process_start_time"}
# Set once by the insert; an update never writes them.
_SET_ON_INSERT = ("id", "created_at")


@dataclass(frozen=True)
class Table(Generic[Record]):
    """The SQL table `name` holding records of class `record`; `kind` names one in messages."""

    name: str
    record: type[Record]
    kind: str

    @property
    def columns(self) -> list[str]:
        return [f.name for f in fields(self.record)]

    @property
    def updatable(self) -> list[str]:
        """The columns an update may write: all but `id` and `created_at`."""
        return [c for c in self.columns if c not in _SET_ON_INSERT]

    def _select(self, rest: str) -> str:
        return f"SELECT {', '.join(self.columns)} FROM {self.name} {rest}"

    def find(self, conn: sqlite3.Connection, column: str, value: Any) -> Record | None:
        """The row whose `column` equals `value` (`id` or the unique `name`), or None."""
        row = conn.execute(self._select(f"WHERE {column} = ?"), (value,)).fetchone()
        return self.record(**dict(row)) if row else None

    def get(self, conn: sqlite3.Connection, row_id: int) -> Record:
        """The row with `row_id`; NotFoundError when there is none."""
        found = self.find(conn, "id", row_id)
        if found is None:
            raise NotFoundError(f"No {self.kind} with id {row_id}.")
        return found

    def all(self, conn: sqlite3.Connection) -> list[Record]:
        """Every row, oldest first."""
        rows = conn.execute(self._select("ORDER BY id")).fetchall()
        return [self.record(**dict(r)) for r in rows]

    def new_row(self, record: Record) -> dict[str, Any]:
        """The values an insert of `record` writes: every column but `id`, `created_at` now
        when the record has none. Raises StoreError for a value of the wrong type."""
        created = time.time() if record.created_at is None else float(record.created_at)
        return {
            c: plain_value(c, created if c == "created_at" else getattr(record, c))
            for c in self.columns
            if c != "id"
        }

    def insert(self, conn: sqlite3.Connection, values: dict[str, Any], name: str) -> int:
        """Insert a row made by `new_row`; returns its id."""
        columns = ", ".join(values)
        marks = ", ".join(":" + c for c in values)
        try:
            cur = conn.execute(f"INSERT INTO {self.name} ({columns}) VALUES ({marks})", values)
        except sqlite3.IntegrityError as err:
            raise self._refusal(err, name) from err
        assert cur.lastrowid is not None  # an INSERT into a rowid table always sets it
        return cur.lastrowid

    def update(
        self, conn: sqlite3.Connection, row_id: int, values: dict[str, Any], name: str
    ) -> Record:
        """Write `values` (plain values of updatable columns) into row `row_id`; returns the
        row as stored. NotFoundError when there is no such row."""
        if values:
            sets = ", ".join(f"{c} = :{c}" for c in values)
            try:
                cur = conn.execute(
                    f"UPDATE {self.name} SET {sets} WHERE id = :_id", {**values, "_id": row_id}
                )
            except sqlite3.IntegrityError as err:
                raise self._refusal(err, name) from err
            if cur.rowcount == 0:
                raise NotFoundError(f"No {self.kind} with id {row_id}.")
        return self.get(conn, row_id)

    def update_record(self, conn: sqlite3.Connection, record: Record) -> Record:
        """Write every updatable field of `record` (which must have an id) into its row."""
        values = {c: plain_value(c, getattr(record, c)) for c in self.updatable}
        return self.update(conn, record.id, values, record.name)

    def rows_to_delete(self, conn: sqlite3.Connection, ids: list[int]) -> list[Record]:
        """The rows of `ids`, oldest first; NotFoundError naming every id without one."""
        rows = conn.execute(
            self._select(f"WHERE id IN ({_marks(ids)}) ORDER BY id"), ids
        ).fetchall()
        records = [self.record(**dict(r)) for r in rows]
        missing = sorted(set(ids) - {r.id for r in records})
        if missing:
            raise NotFoundError(
                f"No {self.kind} with id {', '.join(map(str, missing))}; nothing was deleted."
            )
        return records

    def delete(self, conn: sqlite3.Connection, ids: list[int]) -> None:
        conn.execute(f"DELETE FROM {self.name} WHERE id IN ({_marks(ids)})", ids)

    def _refusal(self, err: sqlite3.IntegrityError, name: str | None) -> StoreError:
        """A failed constraint as the user should read it."""
        text, kind = str(err), self.kind
        if "UNIQUE" in text and ".name" in text:
            article = "An" if kind[0] in "aeiou" else "A"
            return NameTakenError(f"{article} {kind} named {name!r} already exists.")
        if "NOT NULL" in text:
            column = text.rsplit(".", 1)[-1]
            return StoreError(f"The {kind} {name!r} needs a value for {column!r}.")
        if "FOREIGN KEY" in text:
            return StoreError(f"The {kind} {name!r} refers to a dataset that does not exist.")
        return StoreError(f"Cannot store {kind} {name!r}: {text}.")


DATASETS = Table("datasets", DatasetRecord, "dataset")
EXPERIMENTS = Table("experiments", ExperimentRecord, "experiment")


def plain_value(column: str, value: Any) -> Any:
    """Paths (str or PathLike) are stored as text; numpy-like numbers as plain int/float."""
    if value is None:
        return None
    try:
        if column in _PATH_FIELDS:
            return os.fspath(value)
        if column in _INT_FIELDS:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{value} is not a whole number")
            return int(value)
        if column in _FLOAT_FIELDS:
            return float(value)
    except (TypeError, ValueError) as err:
        raise StoreError(f"Invalid value for {column!r}: {value!r} ({err}).") from err
    return value


def unique_ids(ids: int | Iterable[int]) -> list[int]:
    """`ids` (one id or any iterable of them) as a list without repeats, in their order."""
    if isinstance(ids, int):
        ids = [ids]
    return list(dict.fromkeys(int(i) for i in ids))


def _marks(ids: list[int]) -> str:
    return ",".join("?" * len(ids))
