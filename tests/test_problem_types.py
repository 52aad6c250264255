"""Each problem type's `ProblemType` record decides what the user gets: the config its YAML
loads, the task that trains it, the model class and LoRA task its backbone loads with, whether
the Chat tab talks to it, and what its model card tells a user to run.

What each type must do is written out here, apart from the records, from the user guide.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from conftest import default_config, load_cfg

from llm_studio.config.problem_types import (
    ALL_PROBLEM_TYPES,
    PROBLEM_TYPE_LABELS,
    PROBLEM_TYPES,
    ProblemType,
    problem_type_named,
)
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import from_dict, save_config
from llm_studio.experiments.folder import ExperimentFolder

CPU = torch.device("cpu")


class Expected(NamedTuple):
    label: str
    task: str  # the task's class name
    model_class: str  # what the backbone loads as
    peft: str  # the LoRA model's class
    chat: bool  # the Chat tab talks to it
    pipeline: str | None  # the card's Hub pipeline tag
    card_loads: str  # the class the card's usage example loads


CAUSAL = ("AutoModelForCausalLM", "PeftModelForCausalLM")
HEAD = (*CAUSAL, False, None, "AutoModel")  # a head on a causal LM's last hidden state
EXPECTED = {
    "text_causal_language_modeling": Expected(
        "Causal Language Modeling", "CausalLMTask", *CAUSAL, True, "text-generation",
        "AutoModelForCausalLM",
    ),
    "text_dpo_modeling": Expected(
        "DPO Modeling", "DPOTask", *CAUSAL, True, "text-generation", "AutoModelForCausalLM"
    ),
    "text_sequence_to_sequence_modeling": Expected(
        "Sequence To Sequence Modeling", "Seq2SeqTask", "AutoModelForSeq2SeqLM",
        "PeftModelForSeq2SeqLM", True, "text2text-generation", "AutoModelForSeq2SeqLM",
    ),
    "text_causal_classification_modeling": Expected(
        "Causal Classification Modeling", "LabelTask", *HEAD
    ),
    "text_causal_regression_modeling": Expected("Causal Regression Modeling", "LabelTask", *HEAD),
}  # fmt: skip
NAMES = list(EXPECTED)


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    from tiny_model import build_tiny_t5

    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5") / "tiny-t5")


def backbone_for(name: str, tiny_model_dir, tiny_t5_dir):
    return tiny_t5_dir if name == "text_sequence_to_sequence_modeling" else tiny_model_dir


def experiment(tmp_path, name: str, model_dir) -> ExperimentFolder:
    """An experiment folder of the type's default config, as written before training."""
    out = tmp_path / name
    cfg = load_cfg(default_config(name, model_dir, tmp_path / "train.csv", out))
    out.mkdir(parents=True)
    save_config(cfg, out / "cfg.yaml")
    return ExperimentFolder(out)


def test_the_ui_offers_every_problem_type_in_the_guides_order_with_its_label():
    assert [p.name for p in ALL_PROBLEM_TYPES] == NAMES
    # The dropdowns (import wizard, Settings) and docs/settings.md list these views.
    assert {name: e.label for name, e in EXPECTED.items()} == PROBLEM_TYPE_LABELS
    assert list(PROBLEM_TYPES) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_yaml_problem_type_loads_its_config_and_trains_with_its_task(name):
    cfg, warnings = from_dict({"problem_type": name})
    assert not warnings
    assert cfg.problem_type == name and type(cfg) is problem_type_named(name).config
    from llm_studio.training.tasks import build_task

    assert type(build_task(cfg, CPU)).__name__ == EXPECTED[name].task


def test_an_unknown_problem_type_is_refused_naming_the_choices():
    with pytest.raises(ConfigError) as err:
        from_dict({"problem_type": "text_causal_lm"})
    assert "problem_type: got 'text_causal_lm'" in str(err.value)
    assert all(name in str(err.value) for name in NAMES)


def test_a_record_whose_name_is_not_its_configs_problem_type_fails_when_defined():
    causal = problem_type_named("text_causal_language_modeling")
    with pytest.raises(ConfigError, match="CausalLMConfig.problem_type"):
        ProblemType(
            name="text_dpo_modeling",
            label=causal.label,
            config=causal.config,
            task=causal.task,
            auto_model=causal.auto_model,
            peft_task_type=causal.peft_task_type,
        )


@pytest.mark.parametrize("name", NAMES)
def test_the_backbone_loads_with_the_types_model_class_and_lora_task(
    name, tiny_model_dir, tiny_t5_dir, tmp_path
):
    from llm_studio.models.backbone import load_backbone, prepare_for_training

    model_dir = backbone_for(name, tiny_model_dir, tiny_t5_dir)
    cfg = load_cfg(default_config(name, model_dir, tmp_path / "train.csv", tmp_path / "o"))
    assert cfg.training.lora, "LoRA is on by default"
    backbone = load_backbone(cfg, CPU)
    loaded = {"T5ForConditionalGeneration": "AutoModelForSeq2SeqLM"}.get(
        type(backbone.model).__name__, "AutoModelForCausalLM"
    )
    assert loaded == EXPECTED[name].model_class
    assert type(prepare_for_training(backbone.model, cfg)).__name__ == EXPECTED[name].peft


@pytest.mark.parametrize("name", NAMES)
def test_chat_is_offered_exactly_for_the_types_that_generate_text(
    name, tiny_model_dir, tiny_t5_dir, tmp_path
):
    from llm_studio.models.chat import ChatSession

    folder = experiment(tmp_path, name, backbone_for(name, tiny_model_dir, tiny_t5_dir))
    with pytest.raises(ConfigError) as err:
        ChatSession.from_experiment(folder.path)  # no checkpoint yet: refused either way
    refused_for_type = "predicts labels, not text, so there is nothing to chat with"
    assert (refused_for_type not in str(err.value)) == EXPECTED[name].chat
    assert ("no checkpoint to chat with" in str(err.value)) == EXPECTED[name].chat


@pytest.mark.parametrize("name", NAMES)
def test_the_model_card_names_the_type_and_loads_the_right_class(
    name, tiny_model_dir, tiny_t5_dir, tmp_path
):
    from llm_studio.export.model_card import build_model_card

    expected = EXPECTED[name]
    folder = experiment(tmp_path, name, backbone_for(name, tiny_model_dir, tiny_t5_dir))
    card = build_model_card(folder.path)
    assert f"fine-tuned with LLM Studio for **{expected.label}** (`{name}`)" in card
    assert f"{expected.card_loads}.from_pretrained(" in card
    if expected.pipeline:
        assert f"\npipeline_tag: {expected.pipeline}\n" in card
    else:
        assert "pipeline_tag" not in card
    head_files = "`classification_head.safetensors`, `classification_head.json`"
    assert (head_files in card) == (expected.card_loads == "AutoModel")
    pairs = name == "text_dpo_modeling"
    assert ("- **Rejected answer column**: `rejected_response`" in card) == pairs
    assert ("- **DPO beta**: 0.2" in card) == pairs
    decoder_only_text = name in ("text_causal_language_modeling", "text_dpo_modeling")
    assert ("- **Loss on prompts**: no" in card) == decoder_only_text
    # A head reads one prompt per row: no chains, and no answer to end with an EOS token.
    assert ("- **Parent id column**: none" in card) == expected.chat
    assert ("- **EOS token after system / prompt / answer**: yes / yes / yes" in card) == (
        expected.chat
    )
    assert ("- **EOS token after system / prompt**: yes / yes" in card) != expected.chat
    if expected.chat:  # a decoder's output is the answer alone; a causal LM's continues the prompt
        seq2seq = name == "text_sequence_to_sequence_modeling"
        start = "0" if seq2seq else 'inputs["input_ids"].shape[1]'
        assert f"answer = tokenizer.decode(output[0, {start}:]" in card
