"""Grid search: one config per combination, readable distinct names, values checked like YAML."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llm_studio.config.grid import (
    MAX_COMBINATIONS,
    check_combinations,
    expand_grid,
    grid_keys,
    parse_grid,
    parse_values,
)
from llm_studio.config.problem_types import PROBLEM_TYPES
from llm_studio.config.settings import ConfigError
from llm_studio.store.db import check_name


def make(problem_type: str = "text_causal_language_modeling", name: str = "myexp"):
    cfg = PROBLEM_TYPES[problem_type]()
    cfg.experiment_name = name
    cfg.dataset.train_dataframe = "train.csv"
    return cfg


def test_every_combination_once_with_distinct_readable_names():
    cfg = make()
    grid = {"training.learning_rate": [1e-3, 1e-4], "training.lora_r": [4, 8]}
    configs = expand_grid(cfg, grid)
    seen = {(c.training.learning_rate, c.training.lora_r) for c in configs}
    assert seen == {(1e-3, 4), (1e-3, 8), (1e-4, 4), (1e-4, 8)}
    names = [c.experiment_name for c in configs]
    assert names[0] == "myexp_learning_rate-0.001_lora_r-4"
    assert len(set(names)) == 4
    for name in names:
        check_name(name)
    assert cfg.training.lora_r == 4 and cfg.experiment_name == "myexp"  # the base is untouched


def test_a_single_value_is_set_but_not_named():
    configs = expand_grid(make(), {"training.epochs": [3], "training.optimizer": ["SGD", "Adam"]})
    assert [c.training.epochs for c in configs] == [3, 3]
    assert [c.experiment_name for c in configs] == ["myexp_optimizer-SGD", "myexp_optimizer-Adam"]


def test_users_text_parsed_per_key():
    cfg = make()
    grid = parse_grid(
        cfg,
        {
            "training.learning_rate": "0.001, 1e-4,, 0.001",
            "training.epochs": " 1 ,2",
            "training.schedule": ["Linear", "Cosine"],
            "training.lora_r": "",  # empty: the normal widget's single value holds
        },
    )
    assert grid == {
        "training.learning_rate": [0.001, 0.0001],
        "training.epochs": [1, 2],
        "training.schedule": ["Linear", "Cosine"],
    }


@pytest.mark.parametrize(
    ("key", "text", "words"),
    [
        ("training.learning_rate", "0.001, fast", ["training.learning_rate", "'fast'", "a number"]),
        ("training.lora_r", "4, 1000", ["training.lora_r", "1000", "between 1 and 512"]),
        ("training.epochs", "1.5", ["training.epochs", "'1.5'", "an integer"]),
        ("training.optimizer", "Adam, Lion", ["training.optimizer", "'Lion'", "'AdamW'"]),
    ],
)
def test_a_bad_value_names_key_value_and_what_is_allowed(key, text, words):
    with pytest.raises(ConfigError) as err:
        parse_values(make(), key, text)
    for word in words:
        assert word in str(err.value)


def test_refuses_unknown_keys_settings_it_cannot_vary_and_empty_lists():
    cfg = make()
    with pytest.raises(ConfigError, match="training.nope: not a setting of"):
        expand_grid(cfg, {"training.nope": [1]})
    # A DPO setting is not one of causal language modeling.
    with pytest.raises(ConfigError, match="training.beta: not a setting"):
        expand_grid(cfg, {"training.beta": [0.1]})
    assert expand_grid(make("text_dpo_modeling"), {"training.beta": [0.1, 0.2]})
    with pytest.raises(ConfigError, match="dataset.train_dataframe: cannot be grid-searched"):
        expand_grid(cfg, {"dataset.train_dataframe": ["a.csv", "b.csv"]})
    with pytest.raises(ConfigError, match="training.lora_r: the grid needs at least one value"):
        expand_grid(cfg, {"training.lora_r": []})
    with pytest.raises(ConfigError, match="no setting to vary"):
        expand_grid(cfg, {})


def test_refuses_more_than_the_maximum_saying_how_many():
    grid = {"training.epochs": list(range(1, 11)), "training.lora_r": list(range(1, 8))}
    with pytest.raises(ConfigError) as err:
        expand_grid(make(), grid)
    assert "70 combinations asked for (10 × 7)" in str(err.value)
    assert f"at most {MAX_COMBINATIONS}" in str(err.value)
    grid["training.lora_r"] = list(range(1, 7))  # 60 is fine
    assert len(expand_grid(make(), grid)) == 60


def test_grid_keys_derived_from_the_declarations():
    keys = grid_keys(make())
    for key in ("training.learning_rate", "training.lora_r", "training.optimizer",
                "architecture.backbone_dtype", "tokenizer.max_length"):  # fmt: skip
        assert key in keys
    for key in (
        "dataset.train_dataframe",  # a path
        "dataset.prompt_column",  # a list of columns
        "dataset.answer_column",  # a column
        "dataset.data_sample_choice",  # multi
        "prediction.metric_gpt_model",  # free text
        "training.lora",  # a bool
        "environment.gpus",  # a list
        "experiment_name",
        "llm_backbone",
    ):
        assert key not in keys
    assert "training.beta" in grid_keys(make("text_dpo_modeling"))


def test_long_names_stay_valid_and_distinct():
    base = "x" * 95
    configs = expand_grid(make(name=base), {"training.learning_rate": [1e-3, 2e-3, 3e-3]})
    names = [c.experiment_name for c in configs]
    assert len(set(names)) == 3
    for name in names:
        assert check_name(name) and len(name) <= 100


def test_each_combination_is_checked_and_messages_name_where_they_hold():
    cfg = make()
    cfg.training.lora = True
    configs = expand_grid(cfg, {"training.epochs": [0, 1]})
    result = check_combinations(configs, gpu_count=0)
    assert result.errors == []
    assert result.warnings == [
        "training.epochs: 0 evaluates the backbone as it is; LoRA adapters stay empty "
        "(in myexp_epochs-0)"
    ]
    cfg.dataset.train_dataframe = ""
    result = check_combinations(expand_grid(cfg, {"training.epochs": [1, 2]}), gpu_count=0)
    assert result.errors == ["dataset.train_dataframe: no train dataframe is set"]


def test_grid_module_does_not_import_torch():
    code = "import sys, llm_studio.config.grid; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
