"""The environment of a training process: the app's own, with only the secrets the run uses.

The app holds up to seven credentials (Settings, or its own environment). A run gets:
- NEPTUNE_API_TOKEN when it logs to Neptune,
- OPENAI_API_KEY when its validation metric is GPT,
- HF_TOKEN when its backbone must come from the Hugging Face Hub (no local folder or copy).
AWS and Kaggle keys serve only imports, which run in the app: a training process never gets them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

# Every credential the app may hold, and aliases libraries read as well.
SECRET_NAMES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "KAGGLE_USERNAME",
        "KAGGLE_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "OPENAI_API_KEY",
        "NEPTUNE_API_TOKEN",
    }
)


def _is_secret(name: str) -> bool:
    # waved's and the app's access keys (fresh per GUI start) are the GUI's, never a run's.
    return name in SECRET_NAMES or (name.startswith("H2O_WAVE_") and "ACCESS_KEY" in name)


def _read_config(config_file: str | os.PathLike[str]) -> dict:
    try:
        data = yaml.safe_load(Path(config_file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _section(config: dict, name: str) -> dict:
    value = config.get(name)
    return value if isinstance(value, dict) else {}


def _backbone_from_hub(config: dict) -> bool:
    """Neither a local folder nor a prepared copy: the run fetches it (token needed)."""
    from llm_studio.models.offline_backbone import local_copy

    name = str(config.get("llm_backbone") or "")
    return bool(name) and not Path(name).expanduser().is_dir() and local_copy(name) is None


def secrets_used(config_file: str | os.PathLike[str]) -> set[str]:
    """Names of the secrets the run of `config_file` needs."""
    config = _read_config(config_file)
    used = set()
    if str(_section(config, "logging").get("logger")) == "Neptune":
        used.add("NEPTUNE_API_TOKEN")
    if str(_section(config, "prediction").get("metric")) == "GPT":
        used.add("OPENAI_API_KEY")
    if _backbone_from_hub(config):
        used |= {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}
    return used


def training_environment(
    base: Mapping[str, str], secrets: Mapping[str, str], config_file: str | os.PathLike[str]
) -> dict[str, str]:
    """`base` without any secret, plus the secrets (from `secrets`, else `base`) the run uses."""
    used = secrets_used(config_file)
    env = {k: v for k, v in base.items() if not _is_secret(k)}
    for name in used:
        value = secrets.get(name) or base.get(name)
        if value:
            env[name] = value
    env.update({k: v for k, v in secrets.items() if not _is_secret(k)})
    return env
