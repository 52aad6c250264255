"""Where things live on disk, resolved from the package, never from the working directory."""

from __future__ import annotations

from pathlib import Path

from llm_studio.env import setting_env

REPO_ROOT = Path(__file__).resolve().parent.parent


def workdir() -> Path:
    """The folder holding `data/` and `output/`; `H2O_LLM_STUDIO_WORKDIR` moves it."""
    return Path(setting_env("H2O_LLM_STUDIO_WORKDIR") or REPO_ROOT).resolve()


def models_dir() -> Path:
    """Local copies of backbones, named like the hub (`data/models/<org>/<name>`)."""
    return workdir() / "data" / "models"


def prompts_dir() -> Path:
    return REPO_ROOT / "prompts"


def examples_dir() -> Path:
    return REPO_ROOT / "examples"
