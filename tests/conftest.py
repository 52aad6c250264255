"""Shared fixtures: a tiny Llama built once per session, small datasets, and a train.py runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
GUIDE_YAML = REPO / "tests" / "data" / "guide_default.yaml"

# Nothing in the suite may reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def pattern_rows(n: int = 96) -> pd.DataFrame:
    """A learnable set: each answer follows from its prompt by a fixed rule."""
    words = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "rain"]
    rows = []
    for i in range(n):
        word = words[i % len(words)]
        count = 1 + i % 4
        rows.append(
            {
                "id": f"r{i}",
                "instruction": f"Repeat {word} {count} times.",
                "output": " ".join([word] * count),
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def pattern_csv(tmp_path) -> Path:
    path = tmp_path / "pattern.csv"
    pattern_rows().to_csv(path, index=False)
    return path


RUNNABLE = {
    "dataset": {"validation_size": 0.2},
    "architecture": {"backbone_dtype": "float32", "gradient_checkpointing": False},
    "environment": {"gpus": [], "number_of_workers": 0, "seed": 7},
    "tokenizer": {"max_length": 64},
    "prediction": {"max_length_inference": 8},
    "training": {"batch_size": 8, "epochs": 1, "learning_rate": 0.01},
}


def _runnable(cfg: dict, model_dir: Path, train_csv: Path, output: Path, sections: dict) -> dict:
    """Tiny model, CPU, fp32, small numbers; then the caller's changes. A key the problem type
    does not have (e.g. generation settings of a classifier) is left out, not added."""
    cfg["llm_backbone"] = str(model_dir)
    cfg["output_directory"] = str(output)
    cfg["dataset"]["train_dataframe"] = str(train_csv)
    for name, values in RUNNABLE.items():
        cfg[name].update({k: v for k, v in values.items() if k in cfg[name]})
    for name, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(name, {}).update(values)
        else:
            cfg[name] = values
    return cfg


def tiny_config(model_dir: Path, train_csv: Path, output: Path, **sections) -> dict:
    """The guide's default YAML, made runnable here."""
    cfg = yaml.safe_load(GUIDE_YAML.read_text())
    return _runnable(cfg, model_dir, train_csv, output, sections)


def default_config(
    problem_type: str, model_dir: Path, train_csv: Path, output: Path, **sections
) -> dict:
    """A problem type's own default config, made runnable here."""
    from llm_studio.config.problem_types import PROBLEM_TYPES
    from llm_studio.config.yaml_io import to_dict

    cfg = to_dict(PROBLEM_TYPES[problem_type]())
    return _runnable(cfg, model_dir, train_csv, output, sections)


def series(folder, name: str) -> list[tuple[int, float]]:
    """(step, value) of one chart of an experiment folder."""
    points, _ = folder.read_charts()
    return [(p.step, p.value) for p in points if p.name == name]


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(script: str, *args: str, stdin: str | None = None, timeout: int = 600):
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load_cfg(data: dict):
    from llm_studio.config.yaml_io import from_dict

    cfg, _ = from_dict(data)
    return cfg
