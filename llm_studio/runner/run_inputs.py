"""What a run is started from: its config file, the GPUs that file asks for, and the extra
environment (secrets) the caller hands over. Read as plain YAML: no config classes needed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.runner.errors import RunnerError
from llm_studio.store.db import ExperimentRecord, resolve


def config_file_of(record: ExperimentRecord) -> Path:
    """The experiment's config: its `config_file`, else `cfg.yaml` in its folder."""
    if record.config_file:
        return resolve(record.config_file)
    return ExperimentFolder(resolve(record.path)).cfg_yaml


def config_gpus(config_file: Path) -> list[str]:
    """environment.gpus of a config file, read as plain YAML (no config classes needed)."""
    try:
        data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise RunnerError(f"Cannot read the config file {config_file}: {err}.") from err
    environment = data.get("environment") if isinstance(data, dict) else None
    gpus = environment.get("gpus") if isinstance(environment, dict) else None
    if gpus in (None, ""):
        return []
    if isinstance(gpus, (str, int)):
        gpus = [gpus]
    return [str(g) for g in gpus]


def check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """`env` as a new dict, once every name and value is known to be text."""
    env = dict(env or {})
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or not isinstance(value, str):
            raise RunnerError(f"Environment variable {key!r}: name and value must be text.")
    return env
