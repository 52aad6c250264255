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
    from llm_studio.models.tiny import build_tiny_llama

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


def tiny_config(model_dir: Path, train_csv: Path, output: Path, **sections) -> dict:
    """The guide's default YAML, made runnable here: tiny model, CPU, fp32, small numbers."""
    cfg = yaml.safe_load(GUIDE_YAML.read_text())
    cfg["llm_backbone"] = str(model_dir)
    cfg["output_directory"] = str(output)
    cfg["dataset"]["train_dataframe"] = str(train_csv)
    cfg["dataset"]["validation_size"] = 0.2
    cfg["architecture"]["backbone_dtype"] = "float32"
    cfg["architecture"]["gradient_checkpointing"] = False
    cfg["environment"].update(gpus=[], number_of_workers=0, seed=7)
    cfg["tokenizer"]["max_length"] = 64
    cfg["prediction"]["max_length_inference"] = 8
    cfg["training"].update(batch_size=8, epochs=1, learning_rate=0.01)
    for name, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(name, {}).update(values)
        else:
            cfg[name] = values
    return cfg


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
