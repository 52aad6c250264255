"""Crash safety of the store and the experiment folders: kill -9 during an import, a delete
and a rename, then the start-up recovery (issue 12.9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_studio.store import ExperimentRecord, Store


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    return tmp_path


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
