"""Backbones resolve to local folders before the Hub is ever asked, wherever the workdir is."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import default_config, run_cli, write_yaml

from llm_studio.config.settings import ConfigError
from llm_studio.models.offline_backbone import DEFAULT_BACKBONE, local_copy, resolve_backbone
from llm_studio.paths import REPO_ROOT, models_dir


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workdir of its own, and prepared backbones in a folder of their own next to it."""
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    monkeypatch.setenv("H2O_LLM_STUDIO_MODELS_DIR", str(tmp_path / "prepared"))
    return tmp_path


def _fake_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_hub_name_resolves_to_its_local_copy(workdir: Path):
    folder = _fake_model(models_dir() / "some-org" / "some_model.v2")
    assert local_copy("some-org/some_model.v2") == folder.resolve()
    assert resolve_backbone("some-org/some_model.v2") == str(folder.resolve())


def test_hub_name_without_local_copy_is_left_for_the_hub_when_online(workdir: Path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert local_copy("some-org/missing") is None
    assert resolve_backbone("some-org/missing") == "some-org/missing"


def test_folder_without_config_is_not_a_local_copy(workdir: Path):
    (models_dir() / "org" / "half").mkdir(parents=True)
    assert local_copy("org/half") is None


def test_existing_folder_is_used_as_given(workdir: Path):
    folder = _fake_model(workdir / "my-model")
    assert resolve_backbone(str(folder)) == str(folder)


@pytest.mark.parametrize(
    "name",
    ["../outside", "org/..", "../../etc", "/abs/path", "org/model/extra", "model", "org/", ""],
)
def test_names_that_are_not_org_slash_model_have_no_local_copy(workdir: Path, name: str):
    _fake_model(workdir / "outside")
    _fake_model(workdir / "data" / "model")
    assert local_copy(name) is None


def test_prepared_backbones_do_not_live_under_the_workdir(tmp_path, monkeypatch):
    monkeypatch.delenv("H2O_LLM_STUDIO_MODELS_DIR", raising=False)
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    assert models_dir() == REPO_ROOT / ".models"
    monkeypatch.setenv("H2O_LLM_STUDIO_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert models_dir() == (tmp_path / "elsewhere").resolve()


def test_copies_in_the_old_data_models_folder_are_still_found(workdir: Path):
    old = _fake_model(workdir / "data" / "models" / "org" / "old")
    assert local_copy("org/old") == old.resolve()


def test_a_prepared_copy_wins_over_an_old_one(workdir: Path):
    _fake_model(workdir / "data" / "models" / "org" / "both")
    prepared = _fake_model(models_dir() / "org" / "both")
    assert local_copy("org/both") == prepared.resolve()


def test_unknown_backbone_with_the_hub_offline_fails_at_once_naming_where_it_looked(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        resolve_backbone("some-org/missing")
    message = str(err.value)
    assert "llm_backbone some-org/missing" in message
    assert str(models_dir() / "some-org/missing") in message
    assert str(workdir / "data" / "models" / "some-org/missing") in message
    assert constants.HF_HUB_CACHE in message
    assert "make setup" in message


def _few_rows(path: Path) -> Path:
    rows = [{"instruction": f"Say {w}.", "output": w} for w in ("red", "blue", "green", "cat")]
    pd.DataFrame(rows * 3).to_csv(path, index=False)
    return path


def test_train_py_with_an_unknown_backbone_fails_with_that_message(workdir: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = default_config(
        "text_causal_language_modeling",
        "some-org/missing",
        _few_rows(workdir / "train.csv"),
        workdir / "output" / "missing",
    )
    result = run_cli("train.py", "-Y", str(write_yaml(workdir / "cfg.yaml", cfg)), timeout=300)
    assert result.returncode != 0
    assert "llm_backbone some-org/missing: not found locally" in result.stderr
    assert "make setup" in result.stderr
    assert "couldn't connect" not in result.stderr


@pytest.mark.slow
def test_training_on_the_default_backbone_finds_it_with_the_workdir_moved(tmp_path, monkeypatch):
    """The README's way to move data/ and output/ must not lose the prepared default backbone."""
    monkeypatch.delenv("H2O_LLM_STUDIO_MODELS_DIR", raising=False)
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path / "workdir"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    output = tmp_path / "workdir" / "output" / "default-backbone"
    cfg = default_config(
        "text_causal_language_modeling",
        DEFAULT_BACKBONE,
        _few_rows(tmp_path / "train.csv"),
        output,
        training={"epochs": 0, "save_checkpoint": "disable"},
    )
    assert cfg["llm_backbone"] == DEFAULT_BACKBONE
    result = run_cli("train.py", "-Y", str(write_yaml(tmp_path / "cfg.yaml", cfg)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((output / "status.json").read_text())["state"] == "finished"


@pytest.mark.slow
def test_default_backbone_answers_a_question():
    """Needs `make setup`, which converts SmolLM2 into .models/."""
    folder = local_copy(DEFAULT_BACKBONE)
    if folder is None:
        pytest.skip("run `make setup` to convert the default backbone")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
