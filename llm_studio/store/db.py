"""The app's SQLite database: datasets, experiments and user settings.

Layout (all under `llm_studio.paths.workdir()`, resolved when called, never at import):

- `data/dbs/llmstudio.db`: this database.
- `data/user/<dataset>/`: the files of an imported dataset.
- `output/user/<experiment>/`: the folder an experiment writes to.

Safety rules:

- Every operation opens its own connection, so one `Store` may be shared by threads and several
  processes (browser sessions, runners) may use the same file. The journal is WAL, readers never
  block the writer, and `busy_timeout` makes a writer wait for another instead of failing.
- Every write runs in one `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so it
  either sees the latest data and commits all of its changes, or changes nothing.
- The schema version lives in `PRAGMA user_version`; `MIGRATIONS` brings an older file up to
  date when a `Store` opens it, inside one transaction, so an update of the app keeps the data.

How records map to rows lives in `tables.py` (one generic `Table` for both kinds), the records
in `records.py` and the errors in `errors.py`.

Only the standard library and `llm_studio.paths` are imported: the UI process must stay light.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from llm_studio import paths
from llm_studio.names import name_problem
from llm_studio.store.connection import connect, enable_wal, write_transaction
from llm_studio.store.errors import (
    DatasetInUseError,
    InvalidNameError,
    NotFoundError,
    StoreError,
)
from llm_studio.store.records import DatasetRecord, ExperimentRecord
from llm_studio.store.tables import (
    DATASETS,
    EXPERIMENTS,
    Record,
    Table,
    plain_value,
    unique_ids,
)

# --- names and folders ------------------------------------------------------------------------


def check_name(name: object, kind: str = "name") -> str:
    """Return `name` if it is one safe path segment (`llm_studio.names`), else raise
    InvalidNameError saying why."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidNameError(f"{kind[:1].upper() + kind[1:]} {problem}.")
    return name  # type: ignore[return-value]  # name_problem checked it is a str


def _child(root: Path, name: str, kind: str) -> Path:
    check_name(name, kind)
    path = root / name
    if path.parent != root or path.name != name:  # belt and braces after check_name
        raise InvalidNameError(f"{kind[:1].upper() + kind[1:]} {name!r} escapes {root}.")
    return path


def db_path() -> Path:
    """`<workdir>/data/dbs/llmstudio.db`."""
    return paths.workdir() / "data" / "dbs" / "llmstudio.db"


_default_db_path = db_path  # `Store.__init__` has a parameter of the same name


def datasets_root() -> Path:
    """`<workdir>/data/user`: one folder per dataset."""
    return paths.workdir() / "data" / "user"


def experiments_root() -> Path:
    """`<workdir>/output/user`: one folder per experiment."""
    return paths.workdir() / "output" / "user"


def downloads_dir() -> Path:
    """`<workdir>/output/download`: files prepared for the user to download."""
    return paths.workdir() / "output" / "download"


def dataset_dir(name: str) -> Path:
    """`<workdir>/data/user/<name>`; raises InvalidNameError for a name that is not one safe segment."""
    return _child(datasets_root(), name, "dataset name")


def experiment_dir(name: str) -> Path:
    """`<workdir>/output/user/<name>`; raises InvalidNameError for an unsafe name."""
    return _child(experiments_root(), name, "experiment name")


def resolve(path: str | os.PathLike[str]) -> Path:
    """A stored path as an absolute one: relative paths are relative to the workdir."""
    p = Path(path)
    return p if p.is_absolute() else paths.workdir() / p


# --- migrations -------------------------------------------------------------------------------
# Append only. Never edit a migration that has shipped: databases in the field already ran it.


def _migration_1(conn: sqlite3.Connection) -> None:
    """Datasets and experiments."""
    conn.execute(
        """
        CREATE TABLE datasets (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            config_file TEXT NOT NULL,
            problem_type TEXT NOT NULL,
            train_dataframe TEXT NOT NULL,
            validation_dataframe TEXT,
            train_rows INTEGER,
            validation_rows INTEGER,
            created_at REAL NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            dataset_id INTEGER NOT NULL REFERENCES datasets(id),
            path TEXT NOT NULL,
            problem_type TEXT NOT NULL,
            created_at REAL NOT NULL
        )
        """
    )


def _migration_2(conn: sqlite3.Connection) -> None:
    """What a runner needs on experiments; user settings."""
    conn.execute("ALTER TABLE experiments ADD COLUMN config_file TEXT")
    conn.execute("ALTER TABLE experiments ADD COLUMN pid INTEGER")
    conn.execute("ALTER TABLE experiments ADD COLUMN process_start_time REAL")
    conn.execute("ALTER TABLE experiments ADD COLUMN status TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS experiments_dataset_id ON experiments(dataset_id)")
    conn.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migration_1, _migration_2]
SCHEMA_VERSION = len(MIGRATIONS)


# --- the store --------------------------------------------------------------------------------


class Store:
    """The app database. Cheap to create; safe to share between threads."""

    def __init__(self, db_path: Path | None = None):
        self.db_path = Path(db_path) if db_path is not None else _default_db_path()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # connections

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = connect(self.db_path)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction holding the write lock from the start; rolled back on any error."""
        with self._read() as conn, write_transaction(conn):
            yield conn

    def _migrate(self) -> None:
        try:
            self._migrate_once()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"Cannot open the database {self.db_path}: {err}.") from err

    def _migrate_once(self) -> None:
        with self._read() as conn:
            enable_wal(conn)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The database {self.db_path} has schema version {version}, newer than this "
                    f"app understands ({SCHEMA_VERSION}). Update LLM Studio or use another workdir."
                )
            if version == SCHEMA_VERSION:
                return
            with write_transaction(conn):
                # Read again under the write lock: another process may have migrated meanwhile.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                for number in range(version + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[number - 1](conn)
                    conn.execute(f"PRAGMA user_version = {number}")

    def schema_version(self) -> int:
        with self._read() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    # datasets

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        """Insert a new dataset; returns it with `id` (and `created_at` if it was None)."""
        check_name(record.name, "dataset name")
        values = DATASETS.new_row(record)
        with self._write() as conn:
            row_id = DATASETS.insert(conn, values, record.name)
        return replace(record, **values, id=row_id)

    def get_dataset(self, dataset_id: int) -> DatasetRecord | None:
        return self._find(DATASETS, "id", dataset_id)

    def get_dataset_by_name(self, name: str) -> DatasetRecord | None:
        return self._find(DATASETS, "name", name)

    def list_datasets(self) -> list[DatasetRecord]:
        """All datasets, oldest first."""
        with self._read() as conn:
            return DATASETS.all(conn)

    def update_dataset(self, record: DatasetRecord) -> DatasetRecord:
        """Write every field of `record` except `id` and `created_at`; returns the stored row."""
        if not record.id:
            raise StoreError(f"Dataset {record.name!r} has no id: add it before updating it.")
        check_name(record.name, "dataset name")
        with self._write() as conn:
            return DATASETS.update_record(conn, record)

    def delete_datasets(self, ids: Iterable[int]) -> list[DatasetRecord]:
        """Delete all of `ids` or none of them, and return the deleted records.

        Refused with DatasetInUseError (naming each dataset and its experiments) if any is linked
        to an experiment, and with NotFoundError if any id does not exist. Files are left alone:
        delete `dataset_dir(name)` after this returns.
        """
        return self._delete(DATASETS, ids, _refuse_datasets_in_use)

    # experiments

    def add_experiment(self, record: ExperimentRecord) -> ExperimentRecord:
        """Insert a new experiment of an existing dataset; returns it with `id`."""
        check_name(record.name, "experiment name")
        values = EXPERIMENTS.new_row(record)
        with self._write() as conn:
            _require_dataset(conn, record.dataset_id, record.name)
            row_id = EXPERIMENTS.insert(conn, values, record.name)
        return replace(record, **values, id=row_id)

    def get_experiment(self, experiment_id: int) -> ExperimentRecord | None:
        return self._find(EXPERIMENTS, "id", experiment_id)

    def get_experiment_by_name(self, name: str) -> ExperimentRecord | None:
        return self._find(EXPERIMENTS, "name", name)

    def list_experiments(self) -> list[ExperimentRecord]:
        """All experiments, oldest first."""
        with self._read() as conn:
            return EXPERIMENTS.all(conn)

    def update_experiment(self, record: ExperimentRecord) -> ExperimentRecord:
        """Write every field of `record` except `id` and `created_at`; returns the stored row."""
        if not record.id:
            raise StoreError(f"Experiment {record.name!r} has no id: add it before updating it.")
        with self._write() as conn:
            stored = EXPERIMENTS.find(conn, "id", record.id)
            # Only a new name meets today's rule: a record saved under an older, looser rule
            # must stay updatable (its folder already exists under that name).
            if stored is None or stored.name != record.name:
                check_name(record.name, "experiment name")
            _require_dataset(conn, record.dataset_id, record.name)
            return EXPERIMENTS.update_record(conn, record)

    def update_experiment_fields(self, experiment_id: int, **changes: Any) -> ExperimentRecord:
        """Change only the named fields, e.g. `pid=..., process_start_time=..., status=...`.

        A runner and a browser session editing the same experiment do not overwrite each other's
        fields, as they could with get + `update_experiment`.
        """
        unknown = sorted(set(changes) - set(EXPERIMENTS.updatable))
        if unknown:
            raise StoreError(f"Unknown experiment field(s): {', '.join(unknown)}.")
        if "name" in changes:
            check_name(changes["name"], "experiment name")
        values = {k: plain_value(k, v) for k, v in changes.items()}
        with self._write() as conn:
            current = EXPERIMENTS.get(conn, experiment_id)
            name = values.get("name", current.name)
            if "dataset_id" in values:
                _require_dataset(conn, values["dataset_id"], name)
            return EXPERIMENTS.update(conn, experiment_id, values, name)

    def delete_experiments(self, ids: Iterable[int]) -> list[ExperimentRecord]:
        """Delete all of `ids` or none (NotFoundError if one is missing); returns the deleted
        records. Files are left alone: stop the process, then delete `experiment_dir(name)`."""
        return self._delete(EXPERIMENTS, ids)

    # both tables

    def _find(self, table: Table[Record], column: str, value: Any) -> Record | None:
        with self._read() as conn:
            return table.find(conn, column, value)

    def _delete(
        self,
        table: Table[Record],
        ids: Iterable[int],
        refuse: Callable[[sqlite3.Connection, list[int]], None] | None = None,
    ) -> list[Record]:
        """Delete the rows of `ids` in one transaction, after `refuse` (which raises to keep
        them) had its say; returns the deleted records."""
        unique = unique_ids(ids)
        if not unique:
            return []
        with self._write() as conn:
            records = table.rows_to_delete(conn, unique)
            if refuse is not None:
                refuse(conn, unique)
            table.delete(conn, unique)
        return records

    # settings

    def get_setting(self, key: str, default: Any = None) -> Any:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        """Store any JSON-encodable value under `key`."""
        try:
            encoded = json.dumps(value)
        except (TypeError, ValueError) as err:
            raise StoreError(f"Setting {key!r} cannot be stored: {err}.") from err
        with self._write() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, encoded),
            )

    def delete_setting(self, key: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM settings WHERE key = ?", (key,))

    def settings(self) -> dict[str, Any]:
        """All settings as a dict."""
        with self._read() as conn:
            rows = conn.execute("SELECT key, value FROM settings ORDER BY key").fetchall()
        return {r["key"]: json.loads(r["value"]) for r in rows}

    # folders (computed from the workdir when called)

    @staticmethod
    def dataset_dir(name: str) -> Path:
        return dataset_dir(name)

    @staticmethod
    def experiment_dir(name: str) -> Path:
        return experiment_dir(name)


# --- helpers ----------------------------------------------------------------------------------


def _require_dataset(conn: sqlite3.Connection, dataset_id: Any, experiment: str) -> None:
    row = conn.execute(
        "SELECT 1 FROM datasets WHERE id = ?", (plain_value("dataset_id", dataset_id),)
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"Experiment {experiment!r} refers to dataset id {dataset_id}, which does not exist."
        )


def _refuse_datasets_in_use(conn: sqlite3.Connection, ids: list[int]) -> None:
    """DatasetInUseError naming each of the datasets `ids` that experiments link to."""
    links: dict[str, list[str]] = {}
    for r in conn.execute(
        f"SELECT d.name AS dataset, e.name AS experiment FROM experiments e "
        f"JOIN datasets d ON d.id = e.dataset_id WHERE d.id IN ({','.join('?' * len(ids))}) "
        f"ORDER BY d.id, e.id",
        ids,
    ):
        links.setdefault(r["dataset"], []).append(r["experiment"])
    if links:
        parts = [
            f"dataset {d!r} is used by experiment{'s' if len(e) > 1 else ''} "
            + ", ".join(repr(x) for x in e)
            for d, e in links.items()
        ]
        raise DatasetInUseError(
            "Cannot delete: "
            + "; ".join(parts)
            + ". Delete those experiments first; nothing was deleted.",
            links,
        )
