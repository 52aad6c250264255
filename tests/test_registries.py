"""Each setting that picks an implementation by name offers exactly the names training builds,
from one list (llm_studio/config/registries.py); `shown_if` typos fail when a class is defined;
coercing YAML and CLI values keeps its rules."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from llm_studio.config.problem_types import PROBLEM_TYPES
from llm_studio.config.registries import HIGHER_IS_BETTER_METRICS, Registry
from llm_studio.config.sections import TrainingSection
from llm_studio.config.settings import (
    IS_SET,
    ConfigError,
    SettingsGroup,
    coerce,
    setting,
    spec_of,
)
from llm_studio.config.yaml_io import iter_settings, load_config, to_dict
from llm_studio.metrics.text import METRICS
from llm_studio.training import dpo_losses, loggers, losses, optimizers
from llm_studio.training.tasks import classification, seq2seq
from tests.conftest import write_yaml

SHARED = {
    "training.optimizer": optimizers.OPTIMIZERS,
    "training.schedule": optimizers.SCHEDULES,
    "logging.logger": loggers.LOGGERS,
}
TEXT_METRICS = ("BLEU", "Perplexity", "GPT")
# problem type -> registry-backed setting -> the names the training process builds for it
BUILT = {
    "text_causal_language_modeling": {
        "training.loss_function": set(losses.LOSSES),
        "prediction.metric": TEXT_METRICS,
    },
    "text_sequence_to_sequence_modeling": {
        "training.loss_function": set(seq2seq.LOSSES),
        "prediction.metric": TEXT_METRICS,
    },
    "text_dpo_modeling": {
        "training.loss_function": set(dpo_losses.PREFERENCE_LOSSES),
        "prediction.metric": TEXT_METRICS,
    },
    "text_causal_classification_modeling": {
        "training.loss_function": {"CrossEntropy", "BinaryCrossEntropy"},
        "prediction.metric": ("AUC", "Accuracy", "LogLoss"),
    },
    "text_causal_regression_modeling": {
        "training.loss_function": {"MSELoss", "MAELoss"},
        "prediction.metric": ("MSE", "MAE"),
    },
}


def specs(problem_type: str) -> dict:
    return {key: spec_of(f) for key, _, f, _ in iter_settings(PROBLEM_TYPES[problem_type]())}


@pytest.mark.parametrize("problem_type", sorted(PROBLEM_TYPES))
def test_each_registry_backed_setting_offers_exactly_what_training_builds(problem_type):
    declared = specs(problem_type)
    for key, built in {**SHARED, **BUILT[problem_type]}.items():
        assert set(declared[key].choices) == set(built), (problem_type, key)
    # The label task builds every label loss with the activation that turns its outputs into
    # predictions; every metric a setting offers is one validation can compute.
    loss_choices = set(declared["training.loss_function"].choices)
    if problem_type.endswith(("classification_modeling", "regression_modeling")):
        assert loss_choices <= set(classification.LABEL_LOSSES)
        assert loss_choices <= set(classification.ACTIVATIONS)
    assert set(declared["prediction.metric"].choices) <= set(METRICS)


def test_the_label_task_builds_no_loss_and_validation_no_metric_that_no_setting_offers():
    offered = {
        key: {name for p in PROBLEM_TYPES for name in specs(p)[key].choices}
        for key in ("training.loss_function", "prediction.metric")
    }
    assert set(classification.LABEL_LOSSES) <= offered["training.loss_function"]
    assert set(METRICS) == offered["prediction.metric"]


def test_the_experiment_list_ranks_each_metric_the_way_validation_does():
    assert {n for n, m in METRICS.items() if m.higher_is_better} == HIGHER_IS_BETTER_METRICS


def yaml_with(tmp_path, problem_type: str, key: str, value: str):
    data = to_dict(PROBLEM_TYPES[problem_type]())
    section, name = key.split(".")
    data[section][name] = value
    return write_yaml(tmp_path / "cfg.yaml", data)


@pytest.mark.parametrize(
    ("problem_type", "key", "value"),
    [
        ("text_causal_language_modeling", "training.optimizer", "Adamax"),
        ("text_causal_language_modeling", "training.schedule", "OneCycle"),
        ("text_causal_language_modeling", "training.loss_function", "DPOLoss"),
        ("text_dpo_modeling", "training.loss_function", "ORPOLoss"),
        ("text_causal_classification_modeling", "training.loss_function", "MSELoss"),
        ("text_causal_regression_modeling", "prediction.metric", "AUC"),
        ("text_sequence_to_sequence_modeling", "logging.logger", "WandB"),
    ],
)
def test_yaml_with_an_unknown_name_is_refused_naming_the_key_and_every_allowed_name(
    tmp_path, problem_type, key, value
):
    with pytest.raises(ConfigError) as info:
        load_config(yaml_with(tmp_path, problem_type, key, value))
    message = str(info.value)
    assert message.startswith(f"{key}: got {value!r}, expected one of")
    for name in specs(problem_type)[key].choices:
        assert repr(name) in message


def test_training_refuses_an_unknown_name_set_in_code_naming_the_setting():
    """A config changed in code is not coerced again: the lookup itself says what is wrong,
    instead of a bare KeyError."""
    training = PROBLEM_TYPES["text_causal_language_modeling"]().training
    training.optimizer = "Adamax"
    with pytest.raises(ConfigError, match=r"^training\.optimizer: got 'Adamax', expected one of "):
        optimizers.build_optimizer(torch.nn.Linear(2, 2), training)
    with pytest.raises(ConfigError, match=r"^training\.schedule: got 'OneCycle'.*'Cosine'"):
        optimizers.build_scheduler(torch.optim.SGD([torch.zeros(1)], lr=1.0), "OneCycle", 0, 10)


def test_an_implementation_table_must_match_the_declared_names():
    names = Registry("training.optimizer", ("Adam", "SGD"))
    assert list(names.implement({"SGD": 2, "Adam": 1}).items()) == [("Adam", 1), ("SGD", 2)]
    with pytest.raises(TypeError, match=r"training\.optimizer: .*without implementation \['SGD'\]"):
        names.implement({"Adam": 1})
    with pytest.raises(TypeError, match=r"not declared \['Lion'\]"):
        names.implement({"Adam": 1, "SGD": 2, "Lion": 3})


# --- shown_if is checked when a class is defined ---------------------------------------------


def test_a_misspelled_shown_if_key_fails_when_the_class_is_defined():
    with pytest.raises(TypeError) as info:

        @dataclass
        class MisspelledTraining(TrainingSection):
            lora_scale: float = setting(1.0, tip="Extra scale.", shown_if={"lroa": True})

    message = str(info.value)
    assert "MisspelledTraining.lora_scale" in message
    assert "'lroa'" in message


def test_a_shown_if_value_the_other_setting_cannot_take_fails_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"Probe\.gamma: shown_if loss_function='SimPO'"):

        @dataclass
        class Probe(TrainingSection):
            gamma: float = setting(1.0, tip="x", shown_if={"loss_function": "SimPO"})

    @dataclass
    class Fine(TrainingSection):  # a sibling inherited from the base, any value set, a bool
        gamma: float = setting(
            1.0, tip="x", shown_if={"differential_learning_rate_layers": IS_SET, "lora": False}
        )

    assert Fine().gamma == 1.0


def test_every_section_and_config_class_is_checked():
    for cls in PROBLEM_TYPES.values():
        assert issubclass(cls, SettingsGroup)
        for f in dataclasses.fields(cls):
            section = getattr(cls(), f.name)
            if dataclasses.is_dataclass(section):
                assert isinstance(section, SettingsGroup), f"{cls.__name__}.{f.name}"


# --- coercion of YAML and CLI values ---------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (bool, "Yes", True),
        (bool, "0", False),
        (bool, 1, True),
        (int, "7", 7),
        (int, "3.0", 3),
        (int, "1e3", 1000),
        (int, 4.0, 4),
        (int, "12345678901234567891", 12345678901234567891),  # exact, not through a float
        (float, 2, 2.0),
        (float, "1e-4", 1e-4),
        (str, 5, "5"),
        (str, None, ""),
        (list[int], "1, 2,,3", [1, 2, 3]),
        (list[str], None, []),
    ],
)
def test_values_are_coerced_to_the_declared_type(annotation, value, expected):
    out = coerce("section.key", value, annotation, None)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (bool, 2, "true or false"),
        (bool, "maybe", "true or false"),
        (int, True, "an integer"),
        (int, 2.5, "an integer"),
        (int, "2.5", "an integer"),
        (int, "x", "an integer"),
        (float, False, "a number"),
        (float, "x", "a number"),
        (str, True, "a string"),
        (list[int], 3, "a list"),
    ],
)
def test_values_of_the_wrong_type_are_refused_naming_key_value_and_type(
    annotation, value, expected
):
    with pytest.raises(ConfigError) as info:
        coerce("section.key", value, annotation, None)
    assert str(info.value) == f"section.key: got {value!r}, expected {expected}"
