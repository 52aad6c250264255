"""The store shared by threads and processes at once: every write lands or is refused whole,
and the file stays a sound WAL database."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from store_records import ds

from llm_studio.store import NameTakenError, Store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    return tmp_path


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
