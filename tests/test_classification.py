"""Causal classification and regression: learning, metrics, label checks, export and predict."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, default_config, load_cfg, run_cli, write_yaml

from llm_studio.config.classification import ClassificationConfig, RegressionConfig
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import from_dict, to_dict
from llm_studio.data.readers import DataError
from llm_studio.data.splitting import split_and_sample
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.metrics.text import METRICS
from llm_studio.models.heads import HEAD_INFO, HEAD_WEIGHTS
from llm_studio.training.loop import run_experiment
from llm_studio.training.tasks import build_task

CLASSIFICATION = "text_causal_classification_modeling"
REGRESSION = "text_causal_regression_modeling"
CONFIGS = {CLASSIFICATION: ClassificationConfig, REGRESSION: RegressionConfig}
ADJECTIVES = ["small", "red", "old", "big", "green", "round", "heavy", "dry"]
PLACES = ["table", "road", "hill", "shelf", "bench", "floor", "roof", "bridge"]


def thing_rows(things: list[str], n: int, seed: int = 0) -> pd.DataFrame:
    """'There is a <adjective> <thing> on the <place>.'; `thing` is row i's things[i % len]."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        thing = things[i % len(things)]
        text = f"There is a {rng.choice(ADJECTIVES)} {thing} on the {rng.choice(PLACES)}."
        rows.append({"text": text, "thing": thing})
    return pd.DataFrame(rows)


def label_config(model_dir, csv, output, problem_type=CLASSIFICATION, **sections) -> dict:
    """The problem type's default config, runnable here, with the numbers these tests use."""
    cfg = default_config(problem_type, model_dir, csv, output)
    cfg["dataset"].update(validation_size=0.25, prompt_column=["text"])
    cfg["tokenizer"]["max_length"] = 32
    cfg["training"].update(epochs=2, schedule="Constant", lora_r=8, lora_alpha=16)
    for name, values in sections.items():
        cfg[name].update(values)
    return cfg


def train(cfg: dict) -> ExperimentFolder:
    run_experiment(load_cfg(cfg), ExperimentStatus(state="running"))
    return ExperimentFolder(cfg["output_directory"])


def last_value(folder: ExperimentFolder, name: str) -> float:
    return [p.value for p in folder.read_charts()[0] if p.name == name][-1]


# --- classification learns, and the documented recipe reproduces its predictions ---
@pytest.fixture(scope="module")
def apple_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("apple")
    df = thing_rows(["stone", "apple"], 64)
    df["label"] = (df["thing"] == "apple").astype(int)
    df.to_csv(tmp / "apples.csv", index=False)
    cfg = label_config(tiny_model_dir, tmp / "apples.csv", tmp / "out")
    return train(cfg)


def test_classification_learns_an_easy_label(apple_run):
    assert apple_run.read_status().state == "finished"
    assert last_value(apple_run, "validation/AUC") > 0.9
    predictions = pd.read_csv(apple_run.predictions_csv)
    assert {"prompt", "target", "probability_0", "probability_1", "predicted_class", "loss"} <= set(
        predictions.columns
    )
    assert np.allclose(predictions[["probability_0", "probability_1"]].sum(axis=1), 1.0)
    assert (predictions["predicted_class"] == predictions["target"]).mean() > 0.9
    insights = json.loads(apple_run.prediction_insights.read_text())
    assert insights["metric"] == "AUC" and len(insights["best"]) == 5
    train_insights = json.loads(apple_run.train_insights.read_text())
    assert "<|answer|>" in train_insights["samples"][0][0]["text"]
    assert len(train_insights["targets"]) == 8


def recipe_namespace() -> dict:
    """The first python block of docs/classification.md, executed."""
    text = (REPO / "docs" / "classification.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/classification.md", "exec"), namespace)
    return namespace


def test_documented_recipe_reproduces_the_validation_probabilities(apple_run):
    checkpoint = apple_run.checkpoint_dir
    assert (checkpoint / HEAD_WEIGHTS).is_file() and (checkpoint / "model.safetensors").is_file()
    info = json.loads((checkpoint / HEAD_INFO).read_text())
    assert info["num_outputs"] == 2 and info["problem_type"] == CLASSIFICATION
    assert (apple_run.adapter_dir / HEAD_WEIGHTS).is_file()

    recipe = recipe_namespace()
    classifier = recipe["load_classifier"](checkpoint)
    rows = pd.read_csv(apple_run.predictions_csv)
    text = rows["prompt"][0].split("<|prompt|>")[1].split("</s>")[0]
    assert recipe["prompt_text"](classifier[0], text) == rows["prompt"][0]
    probabilities = recipe["predict"](classifier, rows["prompt"].tolist()).numpy()
    assert info["output_columns"] == ["probability_0", "probability_1"]
    expected = rows[info["output_columns"]].to_numpy()
    assert np.allclose(probabilities, expected, atol=1e-4), np.abs(probabilities - expected).max()


# --- regression ---
def test_regression_learns_a_value_set_by_a_keyword(tmp_path, tiny_model_dir):
    values = {"apple": 1.0, "stone": 3.0, "cloud": 5.0}
    df = thing_rows(list(values), 72)
    df["value"] = df["thing"].map(values)
    df.to_csv(tmp_path / "values.csv", index=False)
    cfg = label_config(
        tiny_model_dir,
        tmp_path / "values.csv",
        tmp_path / "out",
        REGRESSION,
        dataset={"answer_column": ["value"]},
        training={"epochs": 4, "evaluation_epochs": 4, "lora": False, "learning_rate": 0.001},
    )
    folder = train(cfg)
    predictions = pd.read_csv(folder.predictions_csv)
    assert {"prompt", "target", "prediction", "loss", "MSE"} <= set(predictions.columns)
    variance = predictions["target"].var(ddof=0)
    mse = last_value(folder, "validation/MSE")
    assert mse == pytest.approx(((predictions["prediction"] - predictions["target"]) ** 2).mean())
    assert mse < 0.5 * variance, (mse, variance)
    info = json.loads((folder.checkpoint_dir / HEAD_INFO).read_text())
    assert info["activation"] == "none" and info["num_outputs"] == 1


# --- metrics against scikit-learn ---
def test_metrics_match_scikit_learn():
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    y2 = rng.integers(0, 2, 40)
    p1 = rng.random(40)
    p2 = np.stack([1 - p1, p1], axis=1)
    y3 = rng.integers(0, 3, 60)
    p3 = rng.random((60, 3)) + 0.1
    p3 /= p3.sum(axis=1, keepdims=True)
    ym = rng.integers(0, 2, (50, 3))
    pm = rng.random((50, 3))

    def value(name, y, p):
        return METRICS[name].value(y, p)

    assert value("AUC", y2, p2) == pytest.approx(sk.roc_auc_score(y2, p1))
    assert value("AUC", y3, p3) == pytest.approx(sk.roc_auc_score(y3, p3, multi_class="ovr"))
    assert value("AUC", ym, pm) == pytest.approx(sk.roc_auc_score(ym, pm))
    assert value("Accuracy", y2, p2) == pytest.approx(sk.accuracy_score(y2, p1 > 0.5))
    assert value("Accuracy", y3, p3) == pytest.approx(sk.accuracy_score(y3, p3.argmax(1)))
    assert value("Accuracy", ym, pm) == pytest.approx(sk.accuracy_score(ym, pm > 0.5))
    assert value("LogLoss", y2, p2) == pytest.approx(sk.log_loss(y2, p2))
    assert value("LogLoss", y3, p3) == pytest.approx(sk.log_loss(y3, p3, labels=[0, 1, 2]))
    per_label = np.mean([sk.log_loss(ym[:, k], pm[:, k]) for k in range(3)])
    assert value("LogLoss", ym, pm) == pytest.approx(per_label)

    t = rng.normal(size=(30, 2))
    q = t + rng.normal(size=(30, 2))
    assert value("MSE", t, q) == pytest.approx(sk.mean_squared_error(t, q))
    assert value("MAE", t, q) == pytest.approx(sk.mean_absolute_error(t, q))
    assert value("MSE", t[:, :1], q[:, :1]) == pytest.approx(
        sk.mean_squared_error(t[:, 0], q[:, 0])
    )
    assert [METRICS[n].higher_is_better for n in ("AUC", "Accuracy", "LogLoss", "MSE", "MAE")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    # A class without positives in validation is left out of the one-vs-rest mean.
    y_missing = np.where(y3 == 2, 0, y3)
    pairs = [(y_missing == k, p3[:, k]) for k in (0, 1)]
    expected = np.mean([sk.roc_auc_score(t, s) for t, s in pairs])
    assert value("AUC", y_missing, p3) == pytest.approx(expected)


# --- bad labels ---
def task_for(tmp_path, model_dir, df, problem_type=CLASSIFICATION, **sections):
    df.to_csv(tmp_path / "data.csv", index=False)
    cfg = load_cfg(
        label_config(model_dir, tmp_path / "data.csv", tmp_path / "out", problem_type, **sections)
    )
    return cfg, build_task(cfg, torch.device("cpu"))


@pytest.mark.parametrize(
    "bad, words",
    [(0.5, ["float", "0.5", "row 3", "'label'"]), (-1, ["negative", "-1", "row 3", "'label'"])],
)
def test_bad_class_label_is_refused_naming_column_and_row(tmp_path, tiny_model_dir, bad, words):
    df = thing_rows(["stone", "apple"], 8)
    df["label"] = [0, 1, 0, bad, 1, 0, 1, 0]
    cfg, task = task_for(tmp_path, tiny_model_dir, df)
    with pytest.raises(DataError) as err:
        split_and_sample(cfg, 7, task)
    message = str(err.value)
    assert all(w in message for w in words), message
    assert "dataset.answer_column" in message


def test_non_numeric_regression_target_is_refused(tmp_path, tiny_model_dir):
    df = thing_rows(["stone", "apple"], 6)
    df["label"] = ["1.5", "2", "lots", "3", "4", "5"]
    cfg, task = task_for(tmp_path, tiny_model_dir, df, REGRESSION)
    with pytest.raises(DataError, match=r"'label': row 2 holds 'lots', which is not a number"):
        split_and_sample(cfg, 7, task)


def test_bad_label_through_train_py_is_one_line_without_traceback(tmp_path, tiny_model_dir):
    df = thing_rows(["stone", "apple"], 8)
    df["label"] = [0, 1, 0, 1, 2.5, 0, 1, 0]
    df.to_csv(tmp_path / "data.csv", index=False)
    cfg = label_config(tiny_model_dir, tmp_path / "data.csv", tmp_path / "out")
    result = run_cli("train.py", "-Y", str(write_yaml(tmp_path / "cfg.yaml", cfg)))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "'label'" in errors[0] and "row 4" in errors[0], result.stderr
    assert ExperimentFolder(tmp_path / "out").read_status().state == "failed"


# --- number of classes ---
def test_num_classes_is_inferred_and_an_override_sizes_the_head(tmp_path, tiny_model_dir):
    df = thing_rows(["stone", "apple", "cloud"], 12)
    df["label"] = df["thing"].map({"stone": 0, "apple": 1, "cloud": 2})
    cfg, task = task_for(tmp_path, tiny_model_dir, df)
    split_and_sample(cfg, 7, task)
    assert task.load().model.head.out_features == 3

    cfg, task = task_for(tmp_path, tiny_model_dir, df, dataset={"num_classes": 5})
    split_and_sample(cfg, 7, task)
    assert task.load().model.head.out_features == 5

    cfg, task = task_for(tmp_path, tiny_model_dir, df, dataset={"num_classes": 2})
    with pytest.raises(DataError, match=r"row 2 holds class 2, but there are 2 classes"):
        split_and_sample(cfg, 7, task)


def test_override_writes_a_probability_per_class(tmp_path, tiny_model_dir):
    df = thing_rows(["stone", "apple"], 16)
    df["label"] = (df["thing"] == "apple").astype(int)
    df.to_csv(tmp_path / "data.csv", index=False)
    cfg = label_config(
        tiny_model_dir,
        tmp_path / "data.csv",
        tmp_path / "out",
        dataset={"num_classes": 4},
        training={"epochs": 0},
        prediction={"metric": "LogLoss"},
    )
    folder = train(cfg)
    predictions = pd.read_csv(folder.predictions_csv)
    columns = [f"probability_{k}" for k in range(4)]
    assert np.allclose(predictions[columns].sum(axis=1), 1.0)
    assert "probability_4" not in predictions and "LogLoss" in predictions
    assert json.loads((folder.checkpoint_dir / HEAD_INFO).read_text())["num_outputs"] == 4


# --- multi-label ---
def test_multi_label_trains_with_binary_cross_entropy(tmp_path, tiny_model_dir):
    df = thing_rows(["stone", "apple", "cloud", "pear"], 48)
    df["fruit"] = df["thing"].isin(["apple", "pear"]).astype(int)
    df["sky"] = (df["thing"] == "cloud").astype(int)
    df.to_csv(tmp_path / "data.csv", index=False)
    cfg = label_config(
        tiny_model_dir,
        tmp_path / "data.csv",
        tmp_path / "out",
        dataset={"answer_column": ["fruit", "sky"]},
        training={"loss_function": "BinaryCrossEntropy", "epochs": 6, "learning_rate": 1e-3},
    )
    folder = train(cfg)
    predictions = pd.read_csv(folder.predictions_csv)
    assert {"target_fruit", "target_sky", "probability_0", "probability_1"} <= set(predictions)
    assert "probability_2" not in predictions and "predicted_class" not in predictions
    losses = [p.value for p in folder.read_charts()[0] if p.name == "train/loss"]
    first_epoch, last_epoch = losses[: len(losses) // 6], losses[-len(losses) // 6 :]
    assert np.mean(last_epoch) < np.mean(first_epoch) - 0.05, losses  # it learns, not noise
    assert json.loads((folder.checkpoint_dir / HEAD_INFO).read_text())["activation"] == "sigmoid"

    wrong = load_cfg({**cfg, "training": {**cfg["training"], "loss_function": "CrossEntropy"}})
    with pytest.raises(ConfigError, match="multi-label; use BinaryCrossEntropy"):
        build_task(wrong, torch.device("cpu"))


# --- default configs through YAML and train.py ---
@pytest.mark.parametrize("problem_type", [CLASSIFICATION, REGRESSION])
def test_default_config_round_trips_and_train_py_runs_it(tmp_path, tiny_model_dir, problem_type):
    default = to_dict(CONFIGS[problem_type]())
    loaded, warnings = from_dict(yaml.safe_load(yaml.safe_dump(default)))
    assert warnings == [] and to_dict(loaded) == default
    assert loaded.problem_type == problem_type

    df = thing_rows(["stone", "apple"], 24)
    df["label"] = (df["thing"] == "apple").astype(int)
    df = df.rename(columns={"text": "instruction"})
    df.to_csv(tmp_path / "data.csv", index=False)
    cfg = dict(default)
    cfg["llm_backbone"] = str(tiny_model_dir)
    cfg["output_directory"] = str(tmp_path / "out")
    cfg["dataset"] = {**default["dataset"], "train_dataframe": str(tmp_path / "data.csv")}
    cfg["architecture"] = {**default["architecture"], "backbone_dtype": "float32"}
    cfg["dataset"]["validation_size"] = 0.2
    result = run_cli("train.py", "-Y", str(write_yaml(tmp_path / "cfg.yaml", cfg)))
    assert result.returncode == 0, result.stderr[-2000:]
    folder = ExperimentFolder(tmp_path / "out")
    assert folder.read_status().state == "finished"
    metric = default["prediction"]["metric"]
    assert any(p.name == f"validation/{metric}" for p in folder.read_charts()[0])
    assert (folder.checkpoint_dir / HEAD_WEIGHTS).is_file()
