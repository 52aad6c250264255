"""The guide's FAQ "Can I run a validation metric on a model post-training, optionally on a
different validation dataset?": New experiment from a trained one's kebab menu, "Use previous
experiment weights", Epochs 0. The new experiment validates the old model as it is."""

from __future__ import annotations

import shutil
import time

import pandas as pd
import pytest
import torch
import yaml
from conftest import load_cfg, pattern_rows, tiny_config
from gui_harness import (
    add_dataset,
    add_experiment,
    browser_page,
    menu,
    row,
    running_app,
    screenshot,
    wait_for_app_port,
    wait_for_text,
    wait_status,
)
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

if shutil.which("chromium") is None:  # `make test` installs it; say so instead of skipping
    pytest.fail("Debian chromium is missing: run `make browser`", pytrace=False)

SOURCE = "trained-source"


def register_trained_source(workdir, tiny_model_dir) -> None:
    """A tiny experiment trained here (full fine-tuning, so its checkpoint differs from the
    backbone everywhere), and its dataset, in the app's store."""
    from llm_studio.config.yaml_io import save_config
    from llm_studio.experiments.folder import ExperimentStatus
    from llm_studio.training.loop import run_experiment

    workdir.mkdir(parents=True)
    csv = workdir / "pattern.csv"
    pattern_rows(48).to_csv(csv, index=False)
    out = workdir / "output" / "user" / SOURCE
    data = tiny_config(
        tiny_model_dir,
        csv,
        out,
        training={"epochs": 1, "lora": False, "learning_rate": 0.01},
        prediction={"max_length_inference": 4},
    )
    data["experiment_name"] = SOURCE
    assert run_experiment(load_cfg(data), ExperimentStatus(state="running")).state == "finished"
    dataset = add_dataset(workdir, "pattern", csv, data["problem_type"])
    # Another dataset of the same problem type, to validate the old model on: other prompts.
    other = pattern_rows(48)
    other["instruction"] = other["instruction"].str.replace("Repeat", "Say", regex=False)
    other.to_csv(workdir / "other.csv", index=False)
    other_cfg = load_cfg(tiny_config(tiny_model_dir, workdir / "other.csv", workdir / "unused"))
    save_config(other_cfg, workdir / "other.yaml")
    add_dataset(
        workdir, "other", workdir / "other.csv", data["problem_type"], workdir / "other.yaml"
    )
    add_experiment(workdir, dataset, out, data["problem_type"])


def validate_in_process(cfg: dict, output, pretrained_weights: str) -> pd.DataFrame:
    """The validation rows of `cfg` (epochs 0) run here, from the given weights."""
    from llm_studio.experiments.folder import ExperimentStatus
    from llm_studio.training.loop import run_experiment

    cfg = {**cfg, "output_directory": str(output)}
    cfg["architecture"] = {**cfg["architecture"], "pretrained_weights": pretrained_weights}
    assert run_experiment(load_cfg(cfg), ExperimentStatus(state="running")).state == "finished"
    return pd.read_csv(output / "validation_predictions.csv", keep_default_na=False)


def test_new_experiment_with_previous_weights_and_epochs_0_validates_the_old_model(
    tmp_path, tiny_model_dir
):
    workdir = tmp_path / "gui-previous"
    user = workdir / "output" / "user"
    register_trained_source(workdir, tiny_model_dir)
    copy = f"{SOURCE}-1"
    with running_app(workdir) as url, browser_page() as page:
        wait_for_app_port(workdir)
        page.goto(url + "#experiments")
        row(page, SOURCE).wait_for(timeout=30_000)
        menu(page, SOURCE, "New experiment")
        wait_for_text(page, f"Settings copied from {SOURCE}", 30)

        weights_box = page.get_by_label("Pretrained weights")
        assert weights_box.input_value() == ""
        toggle = page.get_by_role("switch", name="Use previous experiment weights")
        toggle.click()
        deadline = time.time() + 30
        while weights_box.input_value() != str(user / SOURCE):
            assert time.time() < deadline, weights_box.input_value()
            time.sleep(0.2)
        toggle.click()  # off again: the copied experiment's own value comes back
        deadline = time.time() + 30
        while weights_box.input_value() != "":
            assert time.time() < deadline, weights_box.input_value()
            time.sleep(0.2)
        toggle.click()
        deadline = time.time() + 30
        while weights_box.input_value() != str(user / SOURCE):
            assert time.time() < deadline, weights_box.input_value()
            time.sleep(0.2)
        page.get_by_label("Epochs", exact=True).fill("0")
        # Validate on the other dataset: its data settings come, the copied ones stay.
        page.get_by_role("combobox", name="Dataset").click()
        page.get_by_role("option", name="other").click()
        wait_for_text(page, "Dataset settings from other", 30)
        assert weights_box.input_value() == str(user / SOURCE)
        assert page.get_by_label("Epochs", exact=True).input_value() == "0"
        assert page.get_by_label("Experiment name").input_value() == copy
        screenshot(page, "previous_weights_form")

        page.get_by_role("button", name="Run experiment").click()
        anyway = page.get_by_role("button", name="Run anyway")  # "LoRA adapters stay empty"
        deadline = time.time() + 60
        while not row(page, copy).count():
            assert time.time() < deadline, "Run experiment did not list the new experiment"
            if anyway.count():
                anyway.click()
            time.sleep(0.5)
        wait_status(page, copy, ("finished",), timeout=180)
        screenshot(page, "previous_weights_finished")

    cfg = yaml.safe_load((user / copy / "cfg.yaml").read_text())
    assert cfg["architecture"]["pretrained_weights"] == str(user / SOURCE)
    assert cfg["training"]["epochs"] == 0
    assert cfg["dataset"]["train_dataframe"] == str(workdir / "other.csv")
    # The new experiment validated the old model on the other data, without a training step:
    # its rows are those of the same config run here, and not those of the backbone.
    new = pd.read_csv(user / copy / "validation_predictions.csv", keep_default_na=False)
    assert len(new) == 10 and all("Say " in p for p in new["prompt"])
    old_model, backbone_model = (
        validate_in_process(cfg, tmp_path / name, weights)
        for name, weights in (("old", str(user / SOURCE)), ("backbone", ""))
    )
    assert new["predicted_text"].tolist() == old_model["predicted_text"].tolist()
    assert new["loss"].tolist() == pytest.approx(old_model["loss"].tolist(), rel=1e-5)
    assert new["loss"].tolist() != pytest.approx(backbone_model["loss"].tolist(), rel=1e-3)
    charts = [yaml.safe_load(line) for line in (user / copy / "charts.jsonl").open()]
    assert not [c for c in charts if c["name"] == "train/loss"]
    previous = load_file(user / SOURCE / "checkpoint" / "model.safetensors")
    backbone = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(previous[k], backbone[k]) for k in backbone), "it was trained"
