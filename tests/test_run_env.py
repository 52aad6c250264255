"""Which secrets a training run is handed, decided from its config file alone."""

from __future__ import annotations

import yaml

from llm_studio.runner.run_env import secrets_used, training_environment


def _config(tmp_path, **fields) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(fields))
    return str(path)


def test_each_secret_follows_the_feature_that_uses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    local = tmp_path / "backbone"
    local.mkdir()
    assert secrets_used(_config(tmp_path, llm_backbone=str(local))) == set()
    assert secrets_used(
        _config(tmp_path, llm_backbone=str(local), logging={"logger": "Neptune"})
    ) == {"NEPTUNE_API_TOKEN"}
    assert secrets_used(
        _config(tmp_path, llm_backbone=str(local), prediction={"metric": "GPT"})
    ) == {"OPENAI_API_KEY"}
    # No local folder or copy under data/models: the backbone comes from the Hub.
    assert "HF_TOKEN" in secrets_used(_config(tmp_path, llm_backbone="some-org/some-model"))


def test_secrets_of_the_app_environment_are_filtered_too(tmp_path):
    config = _config(tmp_path, llm_backbone=str(tmp_path), prediction={"metric": "GPT"})
    base = {
        "PATH": "/bin",
        "AWS_SECRET_ACCESS_KEY": "x",
        "OPENAI_API_KEY": "from-env",
        "H2O_WAVE_APP_ACCESS_KEY_SECRET": "the GUI's own",
    }
    env = training_environment(base, {"OPENAI_API_BASE": "http://127.0.0.1:9"}, config)
    assert env == {
        "PATH": "/bin",
        "OPENAI_API_KEY": "from-env",
        "OPENAI_API_BASE": "http://127.0.0.1:9",
    }
