"""Where things live on disk, resolved from the package, never from the working directory."""

from __future__ import annotations

from pathlib import Path

from llm_studio.env import setting_env

REPO_ROOT = Path(__file__).resolve().parent.parent


def workdir() -> Path:
    """The folder holding `data/` and `output/`; `H2O_LLM_STUDIO_WORKDIR` moves it."""
    return Path(setting_env("H2O_LLM_STUDIO_WORKDIR") or REPO_ROOT).resolve()


def models_dir() -> Path:
    """Where prepared backbones go, named like the hub (`<models_dir>/<org>/<name>`).

    `H2O_LLM_STUDIO_MODELS_DIR`, else `.models/` in the install tree. Never under the workdir: moving
    `data/` with `H2O_LLM_STUDIO_WORKDIR`, or mounting an empty `data/` over it in Docker, must
    not hide the default backbone.
    """
    configured = setting_env("H2O_LLM_STUDIO_MODELS_DIR")
    return Path(configured).expanduser().resolve() if configured else REPO_ROOT / ".models"


def legacy_models_dirs() -> list[Path]:
    """Where earlier versions prepared backbones (`data/models` of the workdir and of the repo);
    still read so that existing setups keep working."""
    folders = [workdir() / "data" / "models", REPO_ROOT / "data" / "models"]
    return list(dict.fromkeys(folders))


def backbone_search_path() -> list[Path]:
    """Folders searched for a local copy of a hub backbone, in order."""
    return list(dict.fromkeys([models_dir(), *legacy_models_dirs()]))


def prompts_dir() -> Path:
    return REPO_ROOT / "prompts"


def examples_dir() -> Path:
    return REPO_ROOT / "examples"
