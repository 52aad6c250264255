"""The SQLite store: records, names, migrations, concurrency, settings, workdir."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llm_studio.store import (
    SCHEMA_VERSION,
    DatasetInUseError,
    DatasetRecord,
    ExperimentRecord,
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


def ds(name: str, **kw) -> DatasetRecord:
    values = dict(
        name=name,
        path=f"data/user/{name}",
        config_file=f"data/user/{name}/text_causal_language_modeling_config.yaml",
        problem_type="text_causal_language_modeling_config",
        train_dataframe=f"data/user/{name}/train.csv",
        train_rows=10,
    )
    values.update(kw)
    return DatasetRecord(**values)


def ex(name: str, dataset_id: int, **kw) -> ExperimentRecord:
    values = dict(
        name=name,
        dataset_id=dataset_id,
        path=f"output/user/{name}",
        problem_type="text_causal_language_modeling_config",
        config_file=f"output/user/{name}/cfg.yaml",
    )
    values.update(kw)
    return ExperimentRecord(**values)


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


# --- concurrency ------------------------------------------------------------------------------

WORKER = """
import json, sys
from llm_studio.store import DatasetRecord, Store, StoreError
tag, count = sys.argv[1], int(sys.argv[2])
def rec(name):
    return DatasetRecord(name=name, path='p', config_file='c.yaml', problem_type='t', train_dataframe='t.csv')
store = Store()
print('ready', flush=True)
sys.stdin.readline()  # start together with the test's threads
shared = []
for i in range(count):
    store.add_dataset(rec(f'{tag}-{i}'))
    try:
        store.add_dataset(rec('shared'))
        shared.append('ok')
    except StoreError as err:
        shared.append(str(err))
print(json.dumps(shared))
"""


class _ThreadSessions:
    """`count` threads, each with a Store of its own, adding `per_thread` datasets of their own
    and trying to add "shared" after each; they start together once `release` is called."""

    def __init__(self, count: int, per_thread: int) -> None:
        self.per_thread = per_thread
        self.barrier = threading.Barrier(count + 1, timeout=60)
        self.outcomes: list[str] = []
        self.failures: list[BaseException] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.session, args=(t,)) for t in range(count)]
        for t in self.threads:
            t.start()

    def session(self, t: int) -> None:
        try:
            store = Store()  # each session opens (and maybe migrates) the file itself
            self.barrier.wait()
            for i in range(self.per_thread):
                store.add_dataset(ds(f"thread{t}-{i}"))
                try:
                    store.add_dataset(ds("shared"))
                    result = "ok"
                except NameTakenError as err:
                    result = str(err)
                with self.lock:
                    self.outcomes.append(result)
        except BaseException as err:  # surfaced by the test
            self.failures.append(err)
            self.barrier.abort()  # do not leave the others waiting

    def release_and_join(self) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):  # a session failed; reported
            self.barrier.wait()
        for t in self.threads:
            t.join()


def _worker_process(tag: str, count: int) -> subprocess.Popen:
    """A process running WORKER: it opens the store, says "ready" and waits for a line."""
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, tag, str(count)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_sessions_threads_and_processes(workdir):
    threads_n, per_thread, procs_n, per_proc = 8, 15, 2, 25
    procs = [_worker_process(f"proc{p}", per_proc) for p in range(procs_n)]
    sessions = _ThreadSessions(threads_n, per_thread)
    for p in procs:  # every process has opened the store; now all go at once
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    sessions.release_and_join()
    outcomes = sessions.outcomes
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outcomes.extend(json.loads(out))
    assert not sessions.failures, sessions.failures[0]

    names = {d.name for d in Store().list_datasets()}
    expected = {f"thread{t}-{i}" for t in range(threads_n) for i in range(per_thread)}
    expected |= {f"proc{p}-{i}" for p in range(procs_n) for i in range(per_proc)}
    assert names == expected | {"shared"}
    assert outcomes.count("ok") == 1
    refusals = [o for o in outcomes if o != "ok"]
    assert len(refusals) == threads_n * per_thread + procs_n * per_proc - 1
    assert set(refusals) == {"A dataset named 'shared' already exists."}

    with sqlite3.connect(Store().db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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


# --- crash safety: kill -9 during an import, a delete and a rename (issue 12.9) ---


def _killed_at_random(operation, iterations: int, seed: int) -> int:
    """Run `operation` in a forked child (the app's own service code, already imported) and
    SIGKILL it after a random delay, `iterations` times; each round ends with the start-up
    recovery and a consistency check. Returns how many children were killed before they
    finished (the delays span the operation's whole duration)."""
    import os
    import random
    import signal
    import time

    from llm_studio.store.recovery import recover

    def fork_and_kill(i: int, delay: float | None) -> bool:
        pid = os.fork()
        if pid == 0:
            try:
                operation(i)
                os._exit(0)
            except BaseException:
                os._exit(1)
        if delay is not None:
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status)
        assert killed or os.WEXITSTATUS(status) == 0, f"round {i}: the operation failed"
        return killed

    start = time.monotonic()
    fork_and_kill(0, None)  # once uninterrupted: how long it takes
    duration = time.monotonic() - start
    recover(Store())
    _assert_store_matches_folders(Store())
    rng = random.Random(seed)
    killed = 0
    for i in range(1, iterations + 1):
        killed += fork_and_kill(i, rng.uniform(0, 1.2 * duration))
        recover(Store())  # the app's start-up
        _assert_store_matches_folders(Store())
    return killed


_CHECKED: set = set()  # configs already checked, by (path, mtime): keeps 30 rounds cheap


def _config_of(path: Path):
    from llm_studio.config.yaml_io import load_config

    key = (str(path), path.stat().st_mtime_ns)
    cfg, _ = load_config(path)
    return cfg, key


def _assert_store_matches_folders(store: Store) -> None:
    from llm_studio.store import datasets_root, experiments_root

    root, tmp = datasets_root(), datasets_root().parent / "tmp"
    folders = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    records = store.list_datasets()
    assert folders == sorted(r.name for r in records), "dataset folders and records differ"
    for record in records:
        config = Path(record.config_file)
        if (str(config), config.stat().st_mtime_ns) not in _CHECKED:
            cfg, key = _config_of(config)
            assert cfg.dataset.train_dataframe == record.train_dataframe
            _CHECKED.add(key)
        assert Path(record.train_dataframe).is_file()
    assert not tmp.is_dir() or list(tmp.iterdir()) == [], "staged files left behind"
    exp_root = experiments_root()
    folders = sorted(p.name for p in exp_root.iterdir()) if exp_root.is_dir() else []
    experiments = store.list_experiments()
    assert folders == sorted(e.name for e in experiments), "experiment folders and records differ"
    for record in experiments:
        cfg, _ = _config_of(Path(record.config_file))
        assert (cfg.experiment_name, cfg.output_directory) == (record.name, record.path)


@pytest.fixture
def csv_file(tmp_path) -> Path:
    path = tmp_path / "chat.csv"
    rows = "".join(f"Question {i}?,Answer {i}.\n" for i in range(2_000))
    path.write_text("instruction,output\n" + rows)
    return path


def _import(name: str, csv_file: Path):
    from llm_studio.ui.datasets_service import import_service

    return import_service(Store()).import_dataset("upload", {"paths": [str(csv_file)]}, name=name)


@pytest.mark.slow  # ~10 s each: 30 rounds of fork, kill, recover and check
def test_kill_during_import_leaves_store_and_folders_in_step(workdir, csv_file):
    killed = _killed_at_random(lambda i: _import(f"ds{i}", csv_file), iterations=30, seed=1)
    assert killed > 0
    assert 0 < len(Store().list_datasets()) <= 31


@pytest.mark.slow  # ~10 s each: 30 rounds of fork, kill, recover and check
def test_kill_during_dataset_delete_leaves_store_and_folders_in_step(workdir, csv_file):
    from llm_studio.store.recovery import delete_datasets

    for i in range(31):
        _import(f"ds{i}", csv_file)
    ids = {r.name: r.id for r in Store().list_datasets()}

    def delete(i: int) -> None:
        delete_datasets(Store(), [ids[f"ds{i}"]])  # what the Delete button runs

    killed = _killed_at_random(delete, iterations=30, seed=2)
    assert killed > 0
    assert len(Store().list_datasets()) < 31


@pytest.mark.slow  # ~10 s each: 30 rounds of fork, kill, recover and check
def test_kill_during_experiment_rename_leaves_store_and_folders_in_step(workdir, csv_file):
    from llm_studio.config.problem_types import PROBLEM_TYPES
    from llm_studio.config.yaml_io import save_config
    from llm_studio.runner import Runner
    from llm_studio.store import experiment_dir

    dataset = _import("data", csv_file)
    dataset_id = Store().get_dataset_by_name(dataset.name).id
    folder = experiment_dir("exp")
    folder.mkdir(parents=True)
    cfg = PROBLEM_TYPES["text_causal_language_modeling"]()
    cfg.experiment_name, cfg.output_directory = "exp", str(folder)
    save_config(cfg, folder / "cfg.yaml")
    record = Store().add_experiment(
        ExperimentRecord(
            name="exp",
            dataset_id=dataset_id,
            path=str(folder),
            problem_type=cfg.problem_type,
            config_file=str(folder / "cfg.yaml"),
            status="finished",
        )
    )

    def rename(i: int) -> None:
        Runner(Store(), gpu_count=0).rename(record.id, f"exp{i}")  # what Rename runs

    killed = _killed_at_random(rename, iterations=30, seed=3)
    assert killed > 0


def test_recovery_never_removes_a_folder_the_app_did_not_mark(workdir, csv_file):
    # A database reset by hand must not cost the user the dataset folders it no longer lists.
    from llm_studio.store import datasets_root
    from llm_studio.store.recovery import recover

    _import("kept", csv_file)
    Store().delete_datasets([Store().get_dataset_by_name("kept").id])  # the record only
    assert recover(Store()) == [
        f"left {datasets_root() / 'kept'} alone: it has no record in the database"
    ]
    assert (datasets_root() / "kept" / "chat.csv").is_file()
