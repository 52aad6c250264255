"""Real weights end to end: a few LoRA steps on the offline SmolLM2, then a chat with it."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, run_cli, write_yaml

from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.models.offline_backbone import DEFAULT_BACKBONE, convert_smollm2_gguf, local_copy
from llm_studio.paths import models_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    if local_copy(DEFAULT_BACKBONE) is None:  # `make setup` normally prepared it already
        convert_smollm2_gguf(models_dir() / DEFAULT_BACKBONE)
    return local_copy(DEFAULT_BACKBONE)


def test_smollm2_fine_tunes_and_chats(tmp_path, smollm2):
    cfg = yaml.safe_load((REPO / "examples" / "example_demo.yaml").read_text())
    cfg["output_directory"] = str(tmp_path / "smol")
    cfg["dataset"]["train_dataframe"] = str(REPO / "examples" / "data" / "demo_train.csv")
    cfg["dataset"]["data_sample"] = 0.05
    cfg["dataset"]["validation_size"] = 0.15
    cfg["tokenizer"]["max_length"] = 96
    cfg["training"].update(batch_size=2, epochs=1, learning_rate=1e-4)
    cfg["prediction"]["max_length_inference"] = 16
    path = write_yaml(tmp_path / "cfg.yaml", cfg)

    result = run_cli("train.py", "-Y", str(path), timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = ExperimentFolder(tmp_path / "smol")
    assert folder.read_status().state == "finished"
    log = folder.logs.read_text()
    assert f"Loaded {smollm2}" in log, "the hub name resolved to the offline copy"

    chat = run_cli(
        "prompt.py", "-e", str(folder.path), stdin="What is the capital of France?\n", timeout=600
    )
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert "Paris" in chat.stdout
