"""End to end through the command line, as a user runs it: train.py -Y, then prompt.py -e."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import GUIDE_YAML, REPO, run_cli, tiny_config, write_yaml

from llm_studio.experiments.folder import ExperimentFolder

DEMO_CSV = REPO / "examples" / "data" / "demo_train.csv"
SECRETS = {
    "OPENAI_API_KEY": "sk-test-secret-openai-0123456789",
    "HF_TOKEN": "hf_test_secret_token_0123456789",
    "NEPTUNE_API_TOKEN": "neptune-secret-0123456789",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-0123456789",
}


@pytest.fixture(scope="module")
def guide_run(tmp_path_factory, tiny_model_dir):
    """The guide's default-parameters YAML, changing only what the guide's test plan allows."""
    tmp = tmp_path_factory.mktemp("guide")
    cfg = yaml.safe_load(GUIDE_YAML.read_text())
    cfg["llm_backbone"] = str(tiny_model_dir)
    cfg["dataset"]["train_dataframe"] = str(DEMO_CSV)
    cfg["output_directory"] = str(tmp / "out")
    cfg["environment"]["gpus"] = []
    cfg["training"]["epochs"] = 1
    cfg["architecture"]["backbone_dtype"] = "float32"
    path = write_yaml(tmp / "cfg.yaml", cfg)
    env = {**os.environ, **SECRETS}
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-Y", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    return result, ExperimentFolder(tmp / "out")


def test_guide_yaml_trains_and_fills_the_experiment_folder(guide_run):
    result, folder = guide_run
    assert result.returncode == 0, result.stderr[-2000:]
    assert "step" in result.stdout and "Validation at step" in result.stdout
    for name in (
        "cfg.yaml",
        "logs.log",
        "status.json",
        "charts.jsonl",
        "train_data_insights.json",
        "validation_predictions.csv",
        "validation_prediction_insights.json",
        "checkpoint/config.json",
        "checkpoint/model.safetensors",
        "checkpoint/tokenizer.json",
        "checkpoint/chat_template.jinja",
        "adapter_model/adapter_model.safetensors",
        "adapter_model/adapter_config.json",
    ):
        assert (folder.path / name).is_file(), name
    status = json.loads(folder.status_file.read_text())
    assert status["state"] == "finished" and status["progress"] == 1.0
    assert status["pid"] and status["pid_start_time"]
    log = folder.logs.read_text()
    assert "mixed_precision: off, because this run is on the CPU" in log


def test_no_secret_reaches_the_experiment_folder(guide_run):
    _, folder = guide_run
    for path in folder.path.rglob("*"):
        if path.is_file() and path.suffix != ".safetensors":
            text = path.read_text(errors="ignore")
            for secret in SECRETS.values():
                assert secret not in text, f"{secret} leaked into {path}"


def test_cfg_yaml_is_the_config_as_run(guide_run):
    _, folder = guide_run
    saved = yaml.safe_load(folder.cfg_yaml.read_text())
    assert saved["training"]["epochs"] == 1
    assert saved["dataset"]["parent_id_column"] == "None"
    assert saved["environment"]["seed"] != -1, "the drawn seed is recorded"


def test_prompt_py_answers_like_plain_transformers(guide_run):
    _, folder = guide_run
    question = "What is the capital of France?"
    result = run_cli("prompt.py", "-e", str(folder.path), stdin=question + "\n")
    assert result.returncode == 0, result.stderr[-2000:]
    answer = result.stdout.strip()

    # The guide's "Download a model" recipe, with the chat template the checkpoint carries.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder.checkpoint_dir)
    model = AutoModelForCausalLM.from_pretrained(folder.checkpoint_dir).eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == f"<|prompt|>{question}</s><|answer|>"
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    saved = yaml.safe_load(folder.cfg_yaml.read_text())["prediction"]
    with torch.no_grad():
        tokens = model.generate(
            **inputs,
            max_new_tokens=saved["max_length_inference"],
            min_new_tokens=saved["min_length_inference"],
            repetition_penalty=saved["repetition_penalty"],
            num_beams=1,
            do_sample=False,
        )[0]
    expected = tokenizer.decode(tokens[inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer == expected.strip()
    assert answer, "the tiny model still says something"


def test_prompt_py_param_lines_change_generation(guide_run):
    _, folder = guide_run
    script = (
        "--num_history 0\nHello there\n--max_length_inference 3\nHello there\n"
        "--max_length_inference nope\n"
    )
    result = run_cli("prompt.py", "-e", str(folder.path), stdin=script)
    assert result.returncode == 0
    assert "max_length_inference = 3" in result.stderr
    assert "prediction.max_length_inference: got 'nope', expected an integer" in result.stderr
    full, short = result.stdout.strip().split("\n")
    assert full.startswith(short) and len(short) < len(full)


def _bad_run(tmp_path, tiny_model_dir, csv, **changes):
    cfg = tiny_config(tiny_model_dir, csv, tmp_path / "out", **changes)
    path = write_yaml(tmp_path / "cfg.yaml", cfg)
    return run_cli("train.py", "-Y", str(path)), ExperimentFolder(tmp_path / "out")


def _assert_clean_failure(result, folder, *needles):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]
    status = folder.read_status()
    assert status is not None and status.state == "failed"
    assert all(needle in status.error for needle in needles)


def test_missing_column_is_refused_naming_it(tmp_path, tiny_model_dir, pattern_csv):
    result, folder = _bad_run(
        tmp_path, tiny_model_dir, pattern_csv, dataset={"prompt_column": ["question"]}
    )
    _assert_clean_failure(result, folder, "column 'question'", "pattern.csv")


def test_empty_file_is_refused(tmp_path, tiny_model_dir):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result, folder = _bad_run(tmp_path, tiny_model_dir, empty)
    _assert_clean_failure(result, folder, "empty.csv", "empty")


def test_unreadable_parquet_is_refused(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet at all" * 10)
    result, folder = _bad_run(tmp_path, tiny_model_dir, broken)
    _assert_clean_failure(result, folder, "broken.parquet", "cannot be read as parquet")


def test_unknown_problem_type_is_refused(tmp_path, tiny_model_dir, pattern_csv):
    result, folder = _bad_run(
        tmp_path, tiny_model_dir, pattern_csv, problem_type="text_telepathy_modeling"
    )
    _assert_clean_failure(result, folder, "problem_type", "text_telepathy_modeling")


def test_wrong_value_is_refused_naming_key_and_allowed_values(
    tmp_path, tiny_model_dir, pattern_csv
):
    result, folder = _bad_run(
        tmp_path, tiny_model_dir, pattern_csv, training={"optimizer": "Adamax"}
    )
    _assert_clean_failure(result, folder, "training.optimizer", "Adamax", "AdamW")


def test_more_gpus_than_exist_is_refused(tmp_path, tiny_model_dir, pattern_csv):
    gpus = [str(i) for i in range(torch.cuda.device_count() + 1)]
    result, folder = _bad_run(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        environment={"gpus": gpus, "number_of_workers": 0, "seed": 1},
    )
    _assert_clean_failure(result, folder, "environment.gpus")


def test_cli_overrides_reach_the_run(tmp_path, tiny_model_dir, pattern_csv):
    cfg = tiny_config(tiny_model_dir, pattern_csv, tmp_path / "out", training={"epochs": 1})
    path = write_yaml(tmp_path / "cfg.yaml", cfg)
    result = run_cli(
        "train.py",
        "-Y",
        str(path),
        "--training.epochs",
        "0",
        "--dataset.prompt_column",
        "instruction,id",
        "--prediction.max_length_inference=2",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    saved = yaml.safe_load((tmp_path / "out" / "cfg.yaml").read_text())
    assert saved["training"]["epochs"] == 0
    assert saved["dataset"]["prompt_column"] == ["instruction", "id"]
    assert saved["prediction"]["max_length_inference"] == 2
    # The two prompt columns are joined with the separator in what the model was shown.
    predictions = (tmp_path / "out" / "validation_predictions.csv").read_text()
    assert "times.\n\nr" in predictions


def test_prompt_py_explains_a_missing_checkpoint(tmp_path, tiny_model_dir, pattern_csv):
    cfg = tiny_config(
        tiny_model_dir,
        pattern_csv,
        tmp_path / "out",
        training={"epochs": 0, "save_checkpoint": "disable"},
    )
    path = write_yaml(tmp_path / "cfg.yaml", cfg)
    assert run_cli("train.py", "-Y", str(path)).returncode == 0
    result = run_cli("prompt.py", "-e", str(tmp_path / "out"), stdin="hi\n")
    assert result.returncode == 1
    assert "save_checkpoint is 'disable'" in result.stderr
