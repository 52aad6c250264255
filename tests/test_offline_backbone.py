"""Backbones resolve to local folders before the Hub is ever asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_studio.models.offline_backbone import DEFAULT_BACKBONE, local_copy, resolve_backbone
from llm_studio.paths import models_dir


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    return tmp_path


def _fake_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_hub_name_resolves_to_its_local_copy(workdir: Path):
    folder = _fake_model(models_dir() / "some-org" / "some_model.v2")
    assert local_copy("some-org/some_model.v2") == folder.resolve()
    assert resolve_backbone("some-org/some_model.v2") == str(folder.resolve())


def test_hub_name_without_local_copy_is_left_for_the_hub(workdir: Path):
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


@pytest.mark.slow
def test_default_backbone_answers_a_question():
    """Needs `make setup`, which converts SmolLM2 into data/models."""
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
