"""Creating and renaming experiments through the service the UI pages call, without a browser:
the checks before anything is written, the grid's combinations, what submitting writes and
hands to the runner, and renaming."""

from __future__ import annotations

import sys
import textwrap

import pytest
import yaml

from llm_studio.config.problem_types import PROBLEM_TYPES
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import save_config
from llm_studio.runner import Runner, RunnerError, experiments_service
from llm_studio.store import (
    DatasetRecord,
    ExperimentRecord,
    InvalidNameError,
    NotFoundError,
    Store,
    experiment_dir,
    experiments_root,
)

# Stands in for the repo's train.py so the runner starts a real, cheap process: what training
# does is tested elsewhere; here only what the service hands to the runner matters.
WAITING_TRAIN_PY = """\
import time
time.sleep(120)
"""


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path / "work"))
    return Store()


@pytest.fixture
def dataset(store, tmp_path):
    return store.add_dataset(
        DatasetRecord(
            name="d",
            path=str(tmp_path),
            config_file="",
            problem_type="text_causal_language_modeling",
            train_dataframe="train.csv",
        )
    )


@pytest.fixture
def runner(store, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(textwrap.dedent(WAITING_TRAIN_PY))
    runner = Runner(store, repo_root=repo, python=sys.executable, gpu_count=0)
    yield runner
    runner.delete([r.id for r in store.list_experiments()])  # kills what it started


def record(dataset, name: str) -> ExperimentRecord:
    """A record only: a name taken in the store."""
    return ExperimentRecord(
        name=name, dataset_id=dataset.id, path=name, problem_type=dataset.problem_type
    )


def config(name: str = "exp"):
    cfg = PROBLEM_TYPES["text_causal_language_modeling"]()
    cfg.experiment_name = name
    cfg.dataset.train_dataframe = "train.csv"
    return cfg


def test_free_name_counts_past_taken_names(store, dataset):
    assert experiments_service.free_name(store, "d") == "d-1"
    for name in ("d-1", "d-2"):
        store.add_experiment(record(dataset, name))
    assert experiments_service.free_name(store, "d") == "d-3"


def test_plan_checks_a_single_experiment_without_writing(store):
    plan = experiments_service.plan(store, config("single"), None, gpu_count=0)
    assert [c.experiment_name for c in plan.configs] == ["single"]
    assert plan.folders == [experiment_dir("single")]
    assert plan.configs[0].output_directory == str(experiment_dir("single"))
    assert not plan.grid_search and plan.warnings == []
    assert not experiments_root().exists() or not any(experiments_root().iterdir())
    assert store.list_experiments() == []


def test_plan_expands_a_grid_into_named_combinations(store):
    grid = {"training.learning_rate": "0.01, 0.001", "training.lora_r": "2,4"}
    plan = experiments_service.plan(store, config("g"), grid, gpu_count=0)
    names = [c.experiment_name for c in plan.configs]
    assert len(set(names)) == 4 and plan.grid_search
    assert {(c.training.learning_rate, c.training.lora_r) for c in plan.configs} == {
        (0.01, 2),
        (0.01, 4),
        (0.001, 2),
        (0.001, 4),
    }
    assert plan.summary == "Started a grid search of 4 experiments."


def test_plan_refuses_taken_and_invalid_names_saying_which(store, dataset):
    store.add_experiment(record(dataset, "taken"))
    with pytest.raises(ConfigError, match="^Experiment name 'taken' is taken; choose another.$"):
        experiments_service.plan(store, config("taken"), None, gpu_count=0)
    experiment_dir("on-disk").mkdir(parents=True)  # a folder left without a record
    with pytest.raises(ConfigError, match="'on-disk' is taken"):
        experiments_service.plan(store, config("on-disk"), None, gpu_count=0)
    with pytest.raises(InvalidNameError):
        experiments_service.plan(store, config("../escape"), None, gpu_count=0)
    # A grid whose one combination is taken is refused as a whole, naming that one.
    plan = experiments_service.plan(store, config("g"), {"training.epochs": "1, 2"}, 0)
    taken = plan.configs[1].experiment_name
    store.add_experiment(record(dataset, taken))
    with pytest.raises(ConfigError, match=f"'{taken}' is taken"):
        experiments_service.plan(store, config("g"), {"training.epochs": "1, 2"}, 0)


def test_plan_returns_warnings_and_raises_errors_of_the_checks(store):
    cfg = config("w")
    cfg.training.lora = True
    plan = experiments_service.plan(store, cfg, {"training.epochs": "0, 1"}, gpu_count=0)
    assert len(plan.configs) == 2
    assert plan.warnings and "training.epochs: 0 evaluates the backbone" in plan.warnings[0]
    cfg = config("e")
    cfg.dataset.train_dataframe = ""
    with pytest.raises(ConfigError, match="dataset.train_dataframe: no train dataframe"):
        experiments_service.plan(store, cfg, None, gpu_count=0)
    with pytest.raises(ConfigError, match="training.epochs"):
        experiments_service.plan(store, config("b"), {"training.epochs": "one"}, 0)


def test_submit_saves_configs_records_them_and_queues_behind_the_cpu_run(store, dataset, runner):
    grid = {"training.learning_rate": "0.01, 0.001"}
    plan = experiments_service.plan(store, config("s"), grid, gpu_count=0)
    done = experiments_service.submit(runner, store, plan, dataset.id, {"HF_TOKEN": "x"})
    assert [r.name for r in done.records] == [c.experiment_name for c in plan.configs]
    assert done.states == ["running", "queued"]  # one CPU run at a time
    for record, cfg in zip(done.records, plan.configs, strict=True):
        saved = yaml.safe_load((experiment_dir(record.name) / "cfg.yaml").read_text())
        assert saved["experiment_name"] == record.name
        assert saved["training"]["learning_rate"] == cfg.training.learning_rate
        assert saved["output_directory"] == str(experiment_dir(record.name))
        assert "HF_TOKEN" not in yaml.safe_dump(saved) and "x" not in saved.values()
        stored = store.get_experiment(record.id)
        assert stored.dataset_id == dataset.id and stored.config_file == str(
            experiment_dir(record.name) / "cfg.yaml"
        )
    assert runner.queued_ids() == [done.records[1].id]
    # The same plan again: its names are taken now, nothing more is written.
    with pytest.raises(ConfigError, match="is taken"):
        experiments_service.plan(store, config("s"), grid, gpu_count=0)
    assert len(store.list_experiments()) == 2


def test_rename_moves_record_folder_and_config_or_refuses_with_a_message(store, dataset, runner):
    def make(name: str) -> ExperimentRecord:
        folder = experiment_dir(name)
        folder.mkdir(parents=True)
        cfg = config(name)
        cfg.output_directory = str(folder)
        save_config(cfg, folder / "cfg.yaml")
        (folder / "status.json").write_text('{"state": "finished"}')
        return store.add_experiment(
            ExperimentRecord(
                name=name,
                dataset_id=dataset.id,
                path=str(folder),
                problem_type=cfg.problem_type,
                config_file=str(folder / "cfg.yaml"),
            )
        )

    old = make("old")
    make("other")
    renamed = experiments_service.rename(runner, old.id, "new")
    assert (renamed.before.name, renamed.after.name) == ("old", "new")
    assert renamed.before.path == str(experiment_dir("old"))
    assert not experiment_dir("old").exists()
    saved = yaml.safe_load((experiment_dir("new") / "cfg.yaml").read_text())
    assert saved["experiment_name"] == "new"
    with pytest.raises(RunnerError, match="'other' already exists"):
        experiments_service.rename(runner, old.id, "other")
    with pytest.raises(NotFoundError, match="No experiment with id 999"):
        experiments_service.rename(runner, 999, "x")
    assert store.get_experiment(old.id).name == "new"
