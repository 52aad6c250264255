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

Only the standard library and `llm_studio.paths` are imported: the UI process must stay light.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from llm_studio import paths
from llm_studio.names import name_problem

BUSY_TIMEOUT_MS = 30_000


# --- errors -----------------------------------------------------------------------------------


class StoreError(Exception):
    """Anything the store refuses; the message is meant to be shown to the user as is."""


class InvalidNameError(StoreError):
    """A dataset or experiment name that is not a single safe folder name."""


class NameTakenError(StoreError):
    """A dataset or experiment with that name already exists."""


class NotFoundError(StoreError):
    """No dataset or experiment with that id."""


class DatasetInUseError(StoreError):
    """Datasets that experiments still link to; `links` maps dataset name -> experiment names."""

    def __init__(self, message: str, links: dict[str, list[str]]):
        super().__init__(message)
        self.links = links


# --- records ----------------------------------------------------------------------------------


@dataclass
class DatasetRecord:
    """One imported dataset. Paths are stored as given: relative ones are relative to the workdir
    (see `resolve`)."""

    name: str
    path: str
    config_file: str
    problem_type: str
    train_dataframe: str
    validation_dataframe: str | None = None
    train_rows: int | None = None
    validation_rows: int | None = None
    id: int | None = None
    created_at: float | None = None


@dataclass
class ExperimentRecord:
    """One experiment. `pid` and `process_start_time` identify the training process while it runs
    (the start time guards against a reused pid); `status` is free text for the runner."""

    name: str
    dataset_id: int
    path: str
    problem_type: str
    config_file: str | None = None
    pid: int | None = None
    process_start_time: float | None = None
    status: str | None = None
    id: int | None = None
    created_at: float | None = None


_DATASET_COLUMNS = [f.name for f in fields(DatasetRecord)]
_EXPERIMENT_COLUMNS = [f.name for f in fields(ExperimentRecord)]
_PATH_FIELDS = {"path", "config_file", "train_dataframe", "validation_dataframe"}
_INT_FIELDS = {"train_rows", "validation_rows", "dataset_id", "pid"}
_FLOAT_FIELDS = {"created_at", "process_start_time"}


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

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.db_path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._open()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction holding the write lock from the start; rolled back on any error."""
        conn = self._open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _migrate(self) -> None:
        try:
            self._migrate_once()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"Cannot open the database {self.db_path}: {err}.") from err

    def _migrate_once(self) -> None:
        conn = self._open()
        try:
            self._enable_wal(conn)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The database {self.db_path} has schema version {version}, newer than this "
                    f"app understands ({SCHEMA_VERSION}). Update LLM Studio or use another workdir."
                )
            if version == SCHEMA_VERSION:
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Read again under the write lock: another process may have migrated meanwhile.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                for number in range(version + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[number - 1](conn)
                    conn.execute(f"PRAGMA user_version = {number}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @staticmethod
    def _enable_wal(conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment alone with the file; it persists once done.
        for _ in range(100):
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() == "wal":
                    return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
            time.sleep(0.05)
        raise StoreError("Could not switch the database to WAL mode: it stays locked.")

    def schema_version(self) -> int:
        with self._read() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    # datasets

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        """Insert a new dataset; returns it with `id` (and `created_at` if it was None)."""
        check_name(record.name, "dataset name")
        record = replace(record, created_at=_now_if_none(record.created_at))
        values = _params(record, [c for c in _DATASET_COLUMNS if c != "id"])
        with self._write() as conn:
            cur = _insert(conn, "datasets", values, "dataset", record.name)
        return replace(record, **values, id=cur.lastrowid)

    def get_dataset(self, dataset_id: int) -> DatasetRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_cols(_DATASET_COLUMNS)} FROM datasets WHERE id = ?", (dataset_id,)
            ).fetchone()
        return DatasetRecord(**dict(row)) if row else None

    def get_dataset_by_name(self, name: str) -> DatasetRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_cols(_DATASET_COLUMNS)} FROM datasets WHERE name = ?", (name,)
            ).fetchone()
        return DatasetRecord(**dict(row)) if row else None

    def list_datasets(self) -> list[DatasetRecord]:
        """All datasets, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_cols(_DATASET_COLUMNS)} FROM datasets ORDER BY id"
            ).fetchall()
        return [DatasetRecord(**dict(r)) for r in rows]

    def update_dataset(self, record: DatasetRecord) -> DatasetRecord:
        """Write every field of `record` except `id` and `created_at`; returns the stored row."""
        if record.id is None:
            raise StoreError(f"Dataset {record.name!r} has no id: add it before updating it.")
        check_name(record.name, "dataset name")
        columns = [c for c in _DATASET_COLUMNS if c not in ("id", "created_at")]
        with self._write() as conn:
            _update(conn, "datasets", record.id, _params(record, columns), "dataset", record.name)
            row = conn.execute(
                f"SELECT {_cols(_DATASET_COLUMNS)} FROM datasets WHERE id = ?", (record.id,)
            ).fetchone()
        return DatasetRecord(**dict(row))

    def delete_datasets(self, ids: Iterable[int]) -> list[DatasetRecord]:
        """Delete all of `ids` or none of them, and return the deleted records.

        Refused with DatasetInUseError (naming each dataset and its experiments) if any is linked
        to an experiment, and with NotFoundError if any id does not exist. Files are left alone:
        delete `dataset_dir(name)` after this returns.
        """
        ids = _unique_ids(ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {_cols(_DATASET_COLUMNS)} FROM datasets WHERE id IN ({marks}) ORDER BY id",
                ids,
            ).fetchall()
            records = [DatasetRecord(**dict(r)) for r in rows]
            missing = sorted(set(ids) - {r.id for r in records})
            if missing:
                raise NotFoundError(
                    f"No dataset with id {', '.join(map(str, missing))}; nothing was deleted."
                )
            links: dict[str, list[str]] = {}
            for r in conn.execute(
                f"SELECT d.name AS dataset, e.name AS experiment FROM experiments e "
                f"JOIN datasets d ON d.id = e.dataset_id WHERE d.id IN ({marks}) "
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
            conn.execute(f"DELETE FROM datasets WHERE id IN ({marks})", ids)
        return records

    # experiments

    def add_experiment(self, record: ExperimentRecord) -> ExperimentRecord:
        """Insert a new experiment of an existing dataset; returns it with `id`."""
        check_name(record.name, "experiment name")
        record = replace(record, created_at=_now_if_none(record.created_at))
        values = _params(record, [c for c in _EXPERIMENT_COLUMNS if c != "id"])
        with self._write() as conn:
            _require_dataset(conn, record.dataset_id, record.name)
            cur = _insert(conn, "experiments", values, "experiment", record.name)
        return replace(record, **values, id=cur.lastrowid)

    def get_experiment(self, experiment_id: int) -> ExperimentRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_cols(_EXPERIMENT_COLUMNS)} FROM experiments WHERE id = ?",
                (experiment_id,),
            ).fetchone()
        return ExperimentRecord(**dict(row)) if row else None

    def get_experiment_by_name(self, name: str) -> ExperimentRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_cols(_EXPERIMENT_COLUMNS)} FROM experiments WHERE name = ?", (name,)
            ).fetchone()
        return ExperimentRecord(**dict(row)) if row else None

    def list_experiments(self) -> list[ExperimentRecord]:
        """All experiments, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_cols(_EXPERIMENT_COLUMNS)} FROM experiments ORDER BY id"
            ).fetchall()
        return [ExperimentRecord(**dict(r)) for r in rows]

    def update_experiment(self, record: ExperimentRecord) -> ExperimentRecord:
        """Write every field of `record` except `id` and `created_at`; returns the stored row."""
        if record.id is None:
            raise StoreError(f"Experiment {record.name!r} has no id: add it before updating it.")
        columns = [c for c in _EXPERIMENT_COLUMNS if c not in ("id", "created_at")]
        with self._write() as conn:
            stored = conn.execute(
                "SELECT name FROM experiments WHERE id = ?", (record.id,)
            ).fetchone()
            # Only a new name meets today's rule: a record saved under an older, looser rule
            # must stay updatable (its folder already exists under that name).
            if stored is None or stored["name"] != record.name:
                check_name(record.name, "experiment name")
            _require_dataset(conn, record.dataset_id, record.name)
            values = _params(record, columns)
            _update(conn, "experiments", record.id, values, "experiment", record.name)
            row = conn.execute(
                f"SELECT {_cols(_EXPERIMENT_COLUMNS)} FROM experiments WHERE id = ?", (record.id,)
            ).fetchone()
        return ExperimentRecord(**dict(row))

    def update_experiment_fields(self, experiment_id: int, **changes: Any) -> ExperimentRecord:
        """Change only the named fields, e.g. `pid=..., process_start_time=..., status=...`.

        A runner and a browser session editing the same experiment do not overwrite each other's
        fields, as they could with get + `update_experiment`.
        """
        allowed = set(_EXPERIMENT_COLUMNS) - {"id", "created_at"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise StoreError(f"Unknown experiment field(s): {', '.join(unknown)}.")
        if "name" in changes:
            check_name(changes["name"], "experiment name")
        values = {k: _plain(k, v) for k, v in changes.items()}
        select = f"SELECT {_cols(_EXPERIMENT_COLUMNS)} FROM experiments WHERE id = ?"
        with self._write() as conn:
            current = conn.execute(select, (experiment_id,)).fetchone()
            if current is None:
                raise NotFoundError(f"No experiment with id {experiment_id}.")
            name = values.get("name", current["name"])
            if "dataset_id" in values:
                _require_dataset(conn, values["dataset_id"], name)
            if values:
                _update(conn, "experiments", experiment_id, values, "experiment", name)
            row = conn.execute(select, (experiment_id,)).fetchone()
        return ExperimentRecord(**dict(row))

    def delete_experiments(self, ids: Iterable[int]) -> list[ExperimentRecord]:
        """Delete all of `ids` or none (NotFoundError if one is missing); returns the deleted
        records. Files are left alone: stop the process, then delete `experiment_dir(name)`."""
        ids = _unique_ids(ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {_cols(_EXPERIMENT_COLUMNS)} FROM experiments WHERE id IN ({marks}) "
                f"ORDER BY id",
                ids,
            ).fetchall()
            records = [ExperimentRecord(**dict(r)) for r in rows]
            missing = sorted(set(ids) - {r.id for r in records})
            if missing:
                raise NotFoundError(
                    f"No experiment with id {', '.join(map(str, missing))}; nothing was deleted."
                )
            conn.execute(f"DELETE FROM experiments WHERE id IN ({marks})", ids)
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


def _cols(columns: list[str]) -> str:
    return ", ".join(columns)


def _now_if_none(value: float | None) -> float:
    return time.time() if value is None else float(value)


def _plain(column: str, value: Any) -> Any:
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


def _params(record: object, columns: list[str]) -> dict[str, Any]:
    return {c: _plain(c, getattr(record, c)) for c in columns}


def _unique_ids(ids: Iterable[int]) -> list[int]:
    if isinstance(ids, int):
        ids = [ids]
    return list(dict.fromkeys(int(i) for i in ids))


def _integrity(err: sqlite3.IntegrityError, kind: str, name: str | None) -> StoreError:
    text = str(err)
    if "UNIQUE" in text and ".name" in text:
        return NameTakenError(
            f"A{'n' if kind[0] in 'aeiou' else ''} {kind} named {name!r} already exists."
        )
    if "NOT NULL" in text:
        column = text.rsplit(".", 1)[-1]
        return StoreError(f"The {kind} {name!r} needs a value for {column!r}.")
    if "FOREIGN KEY" in text:
        return StoreError(f"The {kind} {name!r} refers to a dataset that does not exist.")
    return StoreError(f"Cannot store {kind} {name!r}: {text}.")


def _insert(
    conn: sqlite3.Connection, table: str, values: dict[str, Any], kind: str, name: str
) -> sqlite3.Cursor:
    sql = (
        f"INSERT INTO {table} ({_cols(list(values))}) VALUES ({', '.join(':' + c for c in values)})"
    )
    try:
        return conn.execute(sql, values)
    except sqlite3.IntegrityError as err:
        raise _integrity(err, kind, name) from err


def _update(
    conn: sqlite3.Connection,
    table: str,
    row_id: int,
    values: dict[str, Any],
    kind: str,
    name: str | None,
) -> None:
    sets = ", ".join(f"{c} = :{c}" for c in values)
    try:
        cur = conn.execute(f"UPDATE {table} SET {sets} WHERE id = :_id", {**values, "_id": row_id})
    except sqlite3.IntegrityError as err:
        raise _integrity(err, kind, name) from err
    if cur.rowcount == 0:
        raise NotFoundError(f"No {kind} with id {row_id}.")


def _require_dataset(conn: sqlite3.Connection, dataset_id: Any, experiment: str) -> None:
    row = conn.execute(
        "SELECT 1 FROM datasets WHERE id = ?", (_plain("dataset_id", dataset_id),)
    ).fetchone()
    if row is None:
        raise NotFoundError(
            f"Experiment {experiment!r} refers to dataset id {dataset_id}, which does not exist."
        )
