"""The SQLite store: records, names, migrations, settings, workdir (concurrency and crash
safety have modules of their own)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from store_records import ds, ex

from llm_studio.store import (
    SCHEMA_VERSION,
    DatasetInUseError,
    DatasetRecord,
    InvalidNameError,
    NameTakenError,
    NotFoundError,
    Store,
    StoreError,
    dataset_dir,
    experiment_dir,
    resolve,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def store(workdir) -> Store:
    return Store()


# --- where things live ------------------------------------------------------------------------


def test_workdir_env_is_read_at_call_time(tmp_path, monkeypatch):
    # llm_studio.store was imported before this test set the variable.
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(first))
    store = Store()
    assert store.db_path == first.resolve() / "data" / "dbs" / "llmstudio.db"
    assert store.db_path.is_file()
    assert dataset_dir("oasst") == first.resolve() / "data" / "user" / "oasst"
    assert store.experiment_dir("run 1") == first.resolve() / "output" / "user" / "run 1"
    assert resolve("data/user/oasst/train.csv") == first.resolve() / "data/user/oasst/train.csv"
    assert resolve("/abs/train.csv") == Path("/abs/train.csv")
    store.add_dataset(ds("oasst"))

    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(second))
    assert experiment_dir("run 1") == second.resolve() / "output" / "user" / "run 1"
    assert store.dataset_dir("oasst") == second.resolve() / "data" / "user" / "oasst"
    other = Store()
    assert other.db_path == second.resolve() / "data" / "dbs" / "llmstudio.db"
    assert other.list_datasets() == []  # a different database
    assert [d.name for d in store.list_datasets()] == ["oasst"]  # the first keeps its file


def test_store_imports_nothing_heavy():
    code = (
        "import sys, json, llm_studio.store; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'pandas', 'numpy', 'yaml', 'llm_studio'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == [
        "llm_studio",
        "llm_studio.env",  # reads H2O_LLM_STUDIO_WORKDIR; the standard library only
        "llm_studio.names",  # the one name rule; the standard library only
        "llm_studio.paths",
        "llm_studio.store",
        # The store's own modules; the standard library only.
        "llm_studio.store.connection",
        "llm_studio.store.db",
        "llm_studio.store.errors",
        "llm_studio.store.records",
        "llm_studio.store.tables",
    ]


# --- records ----------------------------------------------------------------------------------


def test_dataset_crud(store):
    added = store.add_dataset(
        ds("oasst", path=Path("data/user/oasst"), validation_dataframe="v.csv", validation_rows=3)
    )
    assert isinstance(added.id, int)
    assert isinstance(added.created_at, float)
    assert added.path == "data/user/oasst"  # Path objects are stored as text

    assert store.get_dataset(added.id) == added
    assert store.get_dataset_by_name("oasst") == added
    assert store.get_dataset(added.id + 100) is None
    assert store.get_dataset_by_name("nope") is None

    second = store.add_dataset(ds("dolly", created_at=123.5))
    assert second.created_at == 123.5
    assert store.list_datasets() == [added, second]

    added.name = "oasst-2"
    added.train_rows = 99
    added.validation_dataframe = None
    updated = store.update_dataset(added)
    assert updated == added
    assert store.get_dataset_by_name("oasst") is None
    assert store.get_dataset(added.id).train_rows == 99

    with pytest.raises(NotFoundError, match="id 999"):
        store.update_dataset(ds("ghost", id=999))
    with pytest.raises(StoreError, match="no id"):
        store.update_dataset(ds("ghost"))
    with pytest.raises(StoreError, match="path"):
        store.add_dataset(ds("nopath", path=None))


def test_numbers_from_dataframes_are_stored_as_plain_numbers(store):
    np = pytest.importorskip("numpy")
    d = store.add_dataset(ds("np", train_rows=np.int64(7), validation_rows=np.int32(2)))
    assert store.get_dataset(d.id).train_rows == 7
    assert type(store.get_dataset(d.id).train_rows) is int
    with pytest.raises(StoreError, match="train_rows"):
        store.add_dataset(ds("half", train_rows=1.5))
    e = store.add_experiment(ex("np-run", np.int64(d.id), process_start_time=np.float64(2.5)))
    assert store.get_experiment(e.id).process_start_time == 2.5
    with pytest.raises(NotFoundError, match="'np-run' refers to dataset id 404"):
        store.update_experiment_fields(e.id, dataset_id=404)


def test_experiment_crud(store):
    d1 = store.add_dataset(ds("d1"))
    d2 = store.add_dataset(ds("d2"))
    with pytest.raises(NotFoundError, match="dataset id 999"):
        store.add_experiment(ex("orphan", 999))

    e1 = store.add_experiment(ex("e1", d1.id))
    e2 = store.add_experiment(ex("e2", d2.id, pid=4242, process_start_time=17.25))
    assert e1.pid is None and e1.process_start_time is None
    assert store.get_experiment(e1.id) == e1
    assert store.get_experiment_by_name("e2") == e2
    assert store.get_experiment(12345) is None
    assert store.list_experiments() == [e1, e2]
    assert [e for e in store.list_experiments() if e.dataset_id == d1.id] == [e1]

    e1.dataset_id = d2.id
    e1.status = "queued"
    assert store.update_experiment(e1) == e1
    assert [e.name for e in store.list_experiments() if e.dataset_id == d2.id] == ["e1", "e2"]
    with pytest.raises(NotFoundError):
        store.update_experiment(ex("e1", 999, id=e1.id))

    running = store.update_experiment_fields(
        e1.id, pid=31337, process_start_time=1700000000.5, status="running"
    )
    assert (running.pid, running.process_start_time, running.status, running.name) == (
        31337,
        1700000000.5,
        "running",
        "e1",
    )
    with pytest.raises(StoreError, match="bogus"):
        store.update_experiment_fields(e1.id, bogus=1)
    with pytest.raises(NotFoundError):
        store.update_experiment_fields(999, status="x")

    assert store.delete_experiments([e1.id]) == [running]
    assert store.list_experiments() == [e2]


def test_unique_names(store):
    d = store.add_dataset(ds("oasst"))
    with pytest.raises(NameTakenError, match="dataset named 'oasst' already exists"):
        store.add_dataset(ds("oasst"))
    other = store.add_dataset(ds("dolly"))
    other.name = "oasst"
    with pytest.raises(NameTakenError, match="'oasst'"):
        store.update_dataset(other)
    assert store.get_dataset(other.id).name == "dolly"

    store.add_experiment(ex("run", d.id))
    with pytest.raises(NameTakenError, match="experiment named 'run' already exists"):
        store.add_experiment(ex("run", d.id))
    second = store.add_experiment(ex("run-2", d.id))
    with pytest.raises(NameTakenError, match="'run'"):
        store.update_experiment_fields(second.id, name="run")
    assert len(store.list_datasets()) == 2 and len(store.list_experiments()) == 2


# --- deleting ---------------------------------------------------------------------------------


def test_deleting_a_linked_dataset_is_refused(store):
    d = store.add_dataset(ds("oasst"))
    e1 = store.add_experiment(ex("first run", d.id))
    e2 = store.add_experiment(ex("second run", d.id))
    folder = dataset_dir("oasst")
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text("a,b\n")

    with pytest.raises(DatasetInUseError) as err:
        store.delete_datasets([d.id])
    message = str(err.value)
    assert "'oasst'" in message and "'first run'" in message and "'second run'" in message
    assert err.value.links == {"oasst": ["first run", "second run"]}
    assert store.get_dataset(d.id) == d

    store.delete_experiments([e1.id, e2.id])
    assert store.delete_datasets([d.id]) == [d]
    assert store.list_datasets() == []
    assert (folder / "train.csv").is_file()  # files are the caller's to delete


def test_multi_delete_is_all_or_none(store):
    free = store.add_dataset(ds("free"))
    linked = store.add_dataset(ds("linked"))
    also_free = store.add_dataset(ds("also free"))
    e = store.add_experiment(ex("uses linked", linked.id))

    with pytest.raises(DatasetInUseError, match="'linked'.*'uses linked'"):
        store.delete_datasets([free.id, linked.id, also_free.id])
    assert store.list_datasets() == [free, linked, also_free]

    with pytest.raises(NotFoundError, match="777"):
        store.delete_datasets([free.id, 777])
    assert store.list_datasets() == [free, linked, also_free]

    with pytest.raises(NotFoundError, match="888"):
        store.delete_experiments([e.id, 888])
    assert store.list_experiments() == [e]

    assert store.delete_datasets([]) == []
    assert store.delete_datasets([also_free.id, free.id, free.id]) == [free, also_free]
    assert store.list_datasets() == [linked]


# --- migrations -------------------------------------------------------------------------------

# The schema as the first release wrote it. Frozen here on purpose: it must not follow edits.
V1_SQL = [
    """CREATE TABLE datasets (
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
    )""",
    """CREATE TABLE experiments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        dataset_id INTEGER NOT NULL REFERENCES datasets(id),
        path TEXT NOT NULL,
        problem_type TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    "PRAGMA user_version = 1",
]


def test_a_v1_database_opens_after_an_update(workdir):
    path = workdir / "data" / "dbs" / "llmstudio.db"
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    for sql in V1_SQL:
        conn.execute(sql)
    conn.execute(
        "INSERT INTO datasets (name, path, config_file, problem_type, train_dataframe, "
        "validation_dataframe, train_rows, validation_rows, created_at) "
        "VALUES ('old', 'data/user/old', 'data/user/old/cfg.yaml', 'text_causal_language_modeling_config', "
        "'data/user/old/train.pq', NULL, 500, NULL, 1690000000.25)"
    )
    conn.execute(
        "INSERT INTO experiments (name, dataset_id, path, problem_type, created_at) "
        "VALUES ('old run', 1, 'output/user/old run', 'text_causal_language_modeling_config', 1690000100.5)"
    )
    conn.commit()
    conn.close()

    store = Store()
    assert store.schema_version() == SCHEMA_VERSION
    assert store.list_datasets() == [
        DatasetRecord(
            id=1,
            name="old",
            path="data/user/old",
            config_file="data/user/old/cfg.yaml",
            problem_type="text_causal_language_modeling_config",
            train_dataframe="data/user/old/train.pq",
            validation_dataframe=None,
            train_rows=500,
            validation_rows=None,
            created_at=1690000000.25,
        )
    ]
    [old_run] = store.list_experiments()
    assert (old_run.id, old_run.name, old_run.dataset_id, old_run.created_at) == (
        1,
        "old run",
        1,
        1690000100.5,
    )
    assert (old_run.config_file, old_run.pid, old_run.process_start_time) == (None, None, None)

    with sqlite3.connect(path) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(experiments)")}
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"config_file", "pid", "process_start_time", "status"} <= columns
    assert mode == "wal"

    # The new columns and tables work on the migrated file, and reopening changes nothing.
    store.update_experiment_fields(old_run.id, pid=99, process_start_time=5.0)
    store.set_setting("theme", "dark")
    store.add_experiment(ex("new run", 1))
    again = Store()
    assert again.get_experiment(1).pid == 99
    assert again.get_setting("theme") == "dark"
    assert [e.name for e in again.list_experiments() if e.dataset_id == 1] == ["old run", "new run"]
    with pytest.raises(DatasetInUseError, match="'old'"):
        again.delete_datasets([1])


def test_a_database_from_a_newer_app_is_refused(workdir):
    path = workdir / "newer.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_a_failed_migration_changes_nothing(workdir, monkeypatch):
    from llm_studio.store import db

    Store().add_dataset(ds("kept"))

    def broken(conn):
        conn.execute("ALTER TABLE datasets ADD COLUMN half_done TEXT")
        raise RuntimeError("migration bug")

    with monkeypatch.context() as patch:  # undone at the end; the workdir stays set
        patch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, broken])
        patch.setattr(db, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        with pytest.raises(RuntimeError, match="migration bug"):
            Store()
    store = Store()
    assert store.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(store.db_path) as conn:
        assert "half_done" not in {r[1] for r in conn.execute("PRAGMA table_info(datasets)")}
    assert [d.name for d in store.list_datasets()] == ["kept"]


def test_a_file_that_is_not_a_database_is_refused(workdir):
    path = workdir / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="Cannot open the database"):
        Store(path)


# --- names ------------------------------------------------------------------------------------

BAD_NAMES = [
    "../x",
    "..",
    ".",
    "a/b",
    "a\\b",
    ".hidden",
    "/etc/passwd",
    "/abs",
    "",
    "x" * 101,
    " padded",
    "padded ",
    "tab\tname",
    "new\nline",
    "naïve",
    "semi;colon",
    None,
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_unsafe_names_are_refused(store, name):
    with pytest.raises(InvalidNameError):
        dataset_dir(name)
    with pytest.raises(InvalidNameError):
        store.experiment_dir(name)
    with pytest.raises(InvalidNameError):
        store.add_dataset(ds(name))
    assert store.list_datasets() == []


def test_unsafe_name_messages_say_why(store):
    with pytest.raises(StoreError, match=r"'\.\./x' must be a single folder name"):
        dataset_dir("../x")
    with pytest.raises(StoreError, match=r"'\.hidden' must not start with '\.'"):
        experiment_dir(".hidden")
    with pytest.raises(StoreError, match="must not be empty"):
        dataset_dir("")
    d = store.add_dataset(ds("ok"))
    with pytest.raises(InvalidNameError):
        store.add_experiment(ex("a/b", d.id))
    with pytest.raises(InvalidNameError):
        store.update_dataset(ds("../up", id=d.id))
    assert store.get_dataset(d.id).name == "ok"


def test_an_experiment_saved_under_an_older_looser_name_stays_updatable(store):
    """'runs..v2' was a valid experiment name before the one shared rule; its record and
    folder exist, so a status update after an upgrade must not be refused for its name."""
    d = store.add_dataset(ds("ok"))
    e = store.add_experiment(ex("runs_v2", d.id))
    with store._write() as conn:  # as an older version stored it
        conn.execute("UPDATE experiments SET name = 'runs..v2' WHERE id = ?", (e.id,))
    old = store.get_experiment(e.id)
    assert store.update_experiment(dataclasses.replace(old, status="finished")).status == "finished"
    with pytest.raises(InvalidNameError):  # a new name meets today's rule
        store.update_experiment(dataclasses.replace(old, name="again..v3"))


@pytest.mark.parametrize("name", ["my data-1_v2.0", "x" * 100, "A", "run.final", "1"])
def test_safe_names_are_accepted(store, workdir, name):
    assert dataset_dir(name) == workdir.resolve() / "data" / "user" / name
    assert experiment_dir(name) == workdir.resolve() / "output" / "user" / name
    assert store.add_dataset(ds(name)).name == name


# --- settings ---------------------------------------------------------------------------------


def test_settings_round_trip(store):
    assert store.get_setting("default_problem_type") is None
    assert store.get_setting("theme", "light") == "light"
    values = {
        "default_problem_type": "text_causal_language_modeling_config",
        "theme": "dark",
        "max_epochs": 3,
        "learning_rate": 1e-4,
        "delete_dialogs": False,
        "gpus": [0, 1],
        "nested": {"a": [1, {"b": None}]},
        "nothing": None,
    }
    for key, value in values.items():
        store.set_setting(key, value)
    store.set_setting("theme", "light")  # overwrite
    values["theme"] = "light"

    fresh = Store()  # persisted, read through a new store
    for key, value in values.items():
        assert fresh.get_setting(key, "missing") == value
    assert fresh.settings() == values

    fresh.delete_setting("theme")
    assert store.get_setting("theme", "default") == "default"
    with pytest.raises(StoreError, match="'bad'"):
        store.set_setting("bad", object())
