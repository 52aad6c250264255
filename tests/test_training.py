"""Training settings, each shown to have its effect on a tiny model trained in-process."""

from __future__ import annotations

import json
import logging
import math
import shutil

import pytest
import torch
import yaml
from conftest import load_cfg, series, tiny_config

from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.training.loop import run_experiment


def train(tmp_path, model_dir, csv, name="out", **sections) -> ExperimentFolder:
    cfg = load_cfg(tiny_config(model_dir, csv, tmp_path / name, **sections))
    run_experiment(cfg, ExperimentStatus(state="running"))
    return ExperimentFolder(cfg.output_directory)


def test_lora_fine_tune_lowers_validation_loss(tmp_path, tiny_model_dir, pattern_csv):
    folder = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        training={
            "epochs": 4,
            "learning_rate": 0.005,
            "schedule": "Constant",
            "lora": True,
            "lora_r": 16,
            "lora_alpha": 64,
            "evaluate_before_training": True,
        },
    )
    losses = series(folder, "validation/loss")
    assert losses[0][0] == 0, "evaluate_before_training validates at step 0"
    assert losses[-1][1] < losses[0][1] - 0.5, losses


def test_fixed_seed_repeats_the_loss_curve_and_minus_one_draws_a_seed(
    tmp_path, tiny_model_dir, pattern_csv
):
    kwargs = {"dataset": {"data_sample": 0.5}, "prediction": {"max_length_inference": 2}}
    first = series(train(tmp_path, tiny_model_dir, pattern_csv, "a", **kwargs), "train/loss")
    second = series(train(tmp_path, tiny_model_dir, pattern_csv, "b", **kwargs), "train/loss")
    assert first == second and len(first) > 2

    random_kwargs = {**kwargs, "environment": {"seed": -1, "gpus": [], "number_of_workers": 0}}
    seeds, curves = [], []
    for name in ("c", "d"):
        folder = train(tmp_path, tiny_model_dir, pattern_csv, name, **random_kwargs)
        seeds.append(yaml.safe_load(folder.cfg_yaml.read_text())["environment"]["seed"])
        curves.append(series(folder, "train/loss"))
    assert -1 not in seeds and seeds[0] != seeds[1], "cfg.yaml records the seed drawn for -1"
    assert curves[0] != curves[1]


def test_guide_run_writes_status_charts_and_insights(tmp_path, tiny_model_dir, pattern_csv):
    folder = train(
        tmp_path, tiny_model_dir, pattern_csv, training={"epochs": 1, "evaluation_epochs": 0.5}
    )
    status = folder.read_status()
    assert status.state == "finished" and status.progress == 1.0
    assert status.step == status.total_steps == 9  # 77 train rows, batch 8, last batch dropped
    names = {p.name for p in folder.read_charts()[0]}
    assert {"train/loss", "train/lr", "validation/loss", "validation/BLEU"} <= names
    # evaluation_epochs 0.5 validates twice per epoch
    assert len(series(folder, "validation/loss")) == 2

    insights = json.loads(folder.train_insights.read_text())
    first = insights["samples"][0]
    kinds = [piece["kind"] for piece in first]
    assert kinds[0] == "masked" and "trained" in kinds
    prompt_text = "".join(p["text"] for p in first if p["kind"] == "masked")
    assert prompt_text.startswith("<|prompt|>Repeat") and prompt_text.endswith("<|answer|>")

    predictions = folder.predictions_csv.read_text().splitlines()
    assert predictions[0].split(",")[:3] == ["prompt", "target_text", "predicted_text"]
    assert len(predictions) - 1 == 19
    chosen = json.loads(folder.prediction_insights.read_text())
    assert set(chosen) == {"metric", "best", "worst", "random"}
    assert chosen["best"][0]["BLEU"] >= chosen["worst"][0]["BLEU"]


@pytest.mark.parametrize(
    "training, expected_steps",
    [
        ({"batch_size": 8, "epochs": 1}, 9),
        ({"batch_size": 4, "epochs": 1}, 19),
        ({"batch_size": 8, "epochs": 2}, 18),
        ({"batch_size": 8, "epochs": 1, "drop_last_batch": False}, 10),
    ],
)
def test_batch_size_epochs_and_drop_last_set_the_number_of_steps(
    tmp_path, tiny_model_dir, pattern_csv, training, expected_steps
):
    folder = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        training={**training, "evaluation_epochs": 10.0},
        prediction={"max_length_inference": 1},
    )
    assert folder.read_status().total_steps == expected_steps
    assert len(series(folder, "train/loss")) == expected_steps


def test_grad_accumulation_updates_every_k_batches(tmp_path, tiny_model_dir, pattern_csv):
    folder = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        training={"grad_accumulation": 3, "schedule": "Linear", "epochs": 1},
        prediction={"max_length_inference": 1},
    )
    lrs = [v for _, v in series(folder, "train/lr")]
    # 9 batches -> 3 optimizer steps: the learning rate changes only after batches 3, 6 and 9.
    assert lrs[0] == lrs[1] == lrs[2] > lrs[3] == lrs[4] == lrs[5] > lrs[6] == lrs[7] == lrs[8]


def test_train_validation_data_trains_on_both(tmp_path, tiny_model_dir, pattern_csv, caplog):
    caplog.set_level(logging.INFO, logger="llm_studio")
    train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        training={"train_validation_data": True},
        prediction={"max_length_inference": 1},
    )
    assert "Data: 96 train and 19 validation samples" in caplog.text


def test_epochs_zero_evaluates_the_backbone_as_it_is(tmp_path, tiny_model_dir, pattern_csv):
    folder = train(tmp_path, tiny_model_dir, pattern_csv, training={"epochs": 0})
    assert series(folder, "train/loss") == []
    assert [step for step, _ in series(folder, "validation/loss")] == [0]
    from safetensors.torch import load_file

    saved = load_file(folder.checkpoint_dir / "model.safetensors")
    original = load_file(tiny_model_dir / "model.safetensors")
    assert all(torch.equal(saved[k], original[k]) for k in original)


def test_perplexity_metric_is_exp_of_each_rows_loss(tmp_path, tiny_model_dir, pattern_csv):
    folder = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        prediction={"metric": "Perplexity", "max_length_inference": 1},
    )
    import pandas as pd

    df = pd.read_csv(folder.predictions_csv)
    assert df["Perplexity"].tolist() == pytest.approx([math.exp(x) for x in df["loss"]])
    value = series(folder, "validation/Perplexity")[-1][1]
    assert value == pytest.approx(df["Perplexity"].mean())


@pytest.mark.parametrize("mode", ["last", "disable", "each_evaluation_epoch", "best"])
def test_save_checkpoint_modes(tmp_path, tiny_model_dir, pattern_csv, mode):
    folder = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        training={"save_checkpoint": mode, "evaluation_epochs": 0.5},
        prediction={"max_length_inference": 2},
    )
    has_checkpoint = (folder.checkpoint_dir / "model.safetensors").is_file()
    assert has_checkpoint == (mode != "disable")
    snapshots = sorted(p.name for p in folder.path.glob("checkpoint_epoch_*"))
    if mode == "each_evaluation_epoch":
        assert snapshots == ["checkpoint_epoch_0.56", "checkpoint_epoch_1.00"]
    else:
        assert snapshots == []


def test_pretrained_false_starts_from_random_weights(tmp_path, tiny_model_dir, pattern_csv):
    folder = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        architecture={"pretrained": False, "backbone_dtype": "float32"},
        training={"epochs": 0, "lora": False},
    )
    from safetensors.torch import load_file

    saved = load_file(folder.checkpoint_dir / "model.safetensors")
    original = load_file(tiny_model_dir / "model.safetensors")
    assert not torch.equal(
        saved["model.embed_tokens.weight"], original["model.embed_tokens.weight"]
    )


def test_cpu_run_uses_float32_and_says_why(tmp_path, tiny_model_dir, pattern_csv, caplog):
    caplog.set_level(logging.INFO, logger="llm_studio")
    folder = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        architecture={"backbone_dtype": "bfloat16"},
        environment={"mixed_precision": True, "gpus": [], "number_of_workers": 0, "seed": 1},
        training={"epochs": 0},
    )
    assert "Device: cpu" in caplog.text
    assert "the CPU trains in float32" in caplog.text
    assert "mixed_precision: off, because this run is on the CPU" in caplog.text
    config = json.loads((folder.checkpoint_dir / "config.json").read_text())
    assert config["dtype"] == "float32"


def test_output_folder_of_a_rerun_starts_fresh_charts(tmp_path, tiny_model_dir, pattern_csv):
    kwargs = {"training": {"epochs": 0}}
    train(tmp_path, tiny_model_dir, pattern_csv, **kwargs)
    folder = train(tmp_path, tiny_model_dir, pattern_csv, **kwargs)
    assert len(series(folder, "validation/loss")) == 1
    shutil.rmtree(folder.path)
