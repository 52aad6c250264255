"""Renaming an experiment moves its folder, record and cfg.yaml together, and only when idle."""

from __future__ import annotations

import pytest
import yaml

from llm_studio.config.problem_types import CausalLMConfig
from llm_studio.config.yaml_io import save_config
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.runner import Runner, RunnerError
from llm_studio.store import DatasetRecord, ExperimentRecord, Store, experiment_dir


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    store = Store()
    dataset = store.add_dataset(
        DatasetRecord(
            name="d",
            path=str(tmp_path),
            config_file="",
            problem_type="text_causal_language_modeling",
            train_dataframe="t.csv",
        )
    )

    def make(name: str, state: str) -> ExperimentRecord:
        folder = ExperimentFolder(experiment_dir(name))
        cfg = CausalLMConfig(experiment_name=name, output_directory=str(folder.path))
        save_config(cfg, folder.cfg_yaml)
        folder.write_status(ExperimentStatus(state=state))
        return store.add_experiment(
            ExperimentRecord(
                name=name,
                dataset_id=dataset.id,
                path=str(folder.path),
                problem_type=cfg.problem_type,
                config_file=str(folder.cfg_yaml),
            )
        )

    return store, Runner(store, gpu_count=0), make


def test_rename_moves_folder_record_and_config(setup):
    store, runner, make = setup
    record = make("old-name", "finished")
    renamed = runner.rename(record.id, "new-name")
    assert renamed.name == "new-name"
    assert not experiment_dir("old-name").exists()
    saved = yaml.safe_load((experiment_dir("new-name") / "cfg.yaml").read_text())
    assert saved["experiment_name"] == "new-name"
    assert saved["output_directory"] == str(experiment_dir("new-name"))
    assert store.get_experiment(record.id).path == str(experiment_dir("new-name"))


def test_rename_refuses_taken_unsafe_and_queued(setup):
    store, runner, make = setup
    first = make("first", "finished")
    make("second", "finished")
    queued = make("waiting", "queued")
    with pytest.raises(RunnerError, match="already exists"):
        runner.rename(first.id, "second")
    with pytest.raises(Exception, match="name"):
        runner.rename(first.id, "../escape")
    with pytest.raises(RunnerError, match="stop it before renaming"):
        runner.rename(queued.id, "other")
    assert experiment_dir("first").is_dir() and store.get_experiment(first.id).name == "first"
