"""One run-state enum and one liveness check, shared by the folder contract, runner and store."""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing

import psutil

from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.experiments.status import ACTIVE, TERMINAL, RunState, process_alive
from llm_studio.runner import Runner
from llm_studio.store import DatasetRecord, ExperimentRecord, Store, experiment_dir


def _record(store: Store, tmp_path, name: str, **fields) -> ExperimentRecord:
    dataset = store.add_dataset(
        DatasetRecord(
            name=f"{name}-data",
            path=str(tmp_path),
            config_file=str(tmp_path / "dataset.yaml"),
            problem_type="text_causal_language_modeling",
            train_dataframe=str(tmp_path / "train.csv"),
        )
    )
    folder = experiment_dir(name)
    folder.mkdir(parents=True)
    record = store.add_experiment(
        ExperimentRecord(
            name=name,
            dataset_id=dataset.id,
            path=str(folder),
            problem_type="text_causal_language_modeling",
            config_file=str(folder / "cfg.yaml"),
        )
    )
    return store.update_experiment_fields(record.id, **fields) if fields else record


def test_run_states_keep_their_on_disk_strings(tmp_path, monkeypatch):
    """status.json and store rows written before the enum read back, and new ones are the same
    plain strings."""
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path / "work"))
    assert [s.value for s in RunState] == ["queued", "running", "finished", "failed", "stopped"]
    assert set(RunState) == ACTIVE | TERMINAL and not ACTIVE & TERMINAL

    folder = ExperimentFolder(tmp_path / "old")
    folder.path.mkdir()
    folder.status_file.write_text(json.dumps({"state": "finished", "progress": 1.0}))
    assert folder.read_status().state == RunState.FINISHED  # an old file reads

    folder.write_status(ExperimentStatus(state=RunState.STOPPED))
    assert json.loads(folder.status_file.read_text())["state"] == "stopped"

    store = Store()
    record = _record(store, tmp_path, "row", status=RunState.FINISHED)
    with closing(sqlite3.connect(store.db_path)) as conn:
        raw = conn.execute("SELECT status FROM experiments WHERE id = ?", (record.id,)).fetchone()[
            0
        ]
    assert raw == "finished" and type(raw) is str
    assert Runner(store, gpu_count=0).state(store.get_experiment(record.id)) == "finished"


def test_unknown_start_time_reads_as_ended_in_folder_and_runner_alike(tmp_path, monkeypatch):
    """A status naming a live pid but no start time: the folder contract (what the experiment
    list shows) and the runner (what it stops, adopts or restarts) gave opposite answers
    (running vs failed). A pid alone may be a reused one, so both now say it is not alive."""
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path / "work"))
    me = psutil.Process(os.getpid())
    assert process_alive(me.pid, me.create_time())
    assert not process_alive(me.pid, None)
    assert not process_alive(me.pid, me.create_time() - 100)  # the pid was reused

    store = Store()
    record = _record(store, tmp_path, "no-start-time", status=RunState.RUNNING, pid=me.pid)
    folder = ExperimentFolder(record.path)
    folder.write_status(ExperimentStatus(state=RunState.RUNNING, pid=me.pid))
    assert folder.current_status().state == RunState.FAILED
    assert Runner(store, gpu_count=0).state(store.get_experiment(record.id)) == RunState.FAILED

    # With the start time known, both see the live run.
    folder.write_status(
        ExperimentStatus(state=RunState.RUNNING, pid=me.pid, pid_start_time=me.create_time())
    )
    assert folder.current_status().state == RunState.RUNNING
    assert Runner(store, gpu_count=0).state(store.get_experiment(record.id)) == RunState.RUNNING
