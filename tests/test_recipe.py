"""The training recipe's extension points: callbacks at fixed points of a run (how the tests
inject faults, tests/support/fault_plugin.py) and the checkpoint policy of save_checkpoint."""

from __future__ import annotations

import json

import pytest
from conftest import load_cfg, tiny_config
from support.fault_plugin import FaultInjector

from llm_studio.config.settings import ConfigError
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.training.callbacks import CALLBACKS_ENV, TrainingCallback, load_callbacks
from llm_studio.training.checkpointing import CheckpointPolicy
from llm_studio.training.loop import FineTuneRecipe, StopFlag, run_experiment


class StopAfter(TrainingCallback):
    """Records what the recipe told it, and asks for a stop after step `at`."""

    def __init__(self, stop: StopFlag, at: int):
        self.stop, self.at = stop, at
        self.events: list[tuple[str, int]] = []

    def on_read_data(self, recipe: FineTuneRecipe) -> None:
        self.events.append(("read_data", -1))

    def on_step_end(self, recipe: FineTuneRecipe) -> None:
        self.events.append(("step_end", recipe.position.step))
        if recipe.position.step == self.at:
            self.stop.request()


def test_callbacks_see_the_data_read_and_every_step_and_can_stop_the_run(
    tmp_path, tiny_model_dir, pattern_csv
):
    cfg = load_cfg(
        tiny_config(
            tiny_model_dir,
            pattern_csv,
            tmp_path / "out",
            training={"epochs": 1, "evaluation_epochs": 0.5},
            prediction={"max_length_inference": 2},
        )
    )
    stop = StopFlag()
    recorder = StopAfter(stop, at=6)
    status = run_experiment(cfg, ExperimentStatus(state="running"), stop, callbacks=[recorder])
    assert recorder.events == [("read_data", -1)] + [("step_end", s) for s in range(1, 7)]
    assert status.state == "stopped" and status.step == 6
    folder = ExperimentFolder(cfg.output_directory)
    assert folder.read_status().state == "stopped"
    steps = [p.step for p in folder.read_charts()[0] if p.name == "train/loss"]
    assert steps == list(range(1, 7)), "the callback ran after the step was charted"
    position = json.loads((folder.resume_dir / "position.json").read_text())
    assert position["step"] == 6, "a stop from a callback saves the resume state there"


def test_train_py_loads_callbacks_by_name_and_a_bad_name_is_refused_clearly(monkeypatch):
    monkeypatch.setenv(CALLBACKS_ENV, " support.fault_plugin:FaultInjector , ")
    [callback] = load_callbacks()
    assert isinstance(callback, FaultInjector)
    monkeypatch.delenv(CALLBACKS_ENV)
    assert load_callbacks() == []
    for bad in ("no_such_module_here:Thing", "support.fault_plugin:NoSuchClass", "justamodule"):
        with pytest.raises(ConfigError, match=f"{CALLBACKS_ENV}: cannot load '{bad}'"):
            load_callbacks(bad)


def test_the_checkpoint_policy_of_each_save_checkpoint_mode():
    """When checkpoint/ is written: after a validation (improved or not) and at the end of a run
    that finished or stopped, and whether a best run that never improved asks for one."""
    asked = []

    def saved_none() -> bool:
        asked.append(True)
        return False

    def at_end(policy: CheckpointPolicy, stopped: bool) -> bool:
        return policy.saves_at_end(stopped, saved_none)

    last, best = CheckpointPolicy("last"), CheckpointPolicy("best")
    each, disable = CheckpointPolicy("each_evaluation_epoch"), CheckpointPolicy("disable")
    assert [p.saves_after_validation(True) for p in (last, best, each, disable)] == [
        *(False, True, True, False)
    ]
    assert [p.saves_after_validation(False) for p in (last, best, each, disable)] == [
        *(False, False, True, False)
    ]
    assert [p.keeps_each_validation for p in (last, best, each, disable)] == [
        *(False, False, True, False)
    ]
    assert [at_end(p, stopped=True) for p in (last, best, each, disable)] == [
        *(True, True, True, False)
    ]
    assert not asked, "a stopped run saves without asking the other ranks"
    assert [at_end(p, stopped=False) for p in (last, each, disable)] == [True, False, False]
    assert not asked
    assert at_end(best, stopped=False) and asked == [True], "best saves if no validation did"
    assert not best.saves_at_end(False, lambda: True)
    assert disable.disabled and not last.disabled
    with pytest.raises(ValueError, match="unknown mode 'sometimes'"):
        CheckpointPolicy("sometimes")
