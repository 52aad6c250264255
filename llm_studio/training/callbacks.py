"""Callbacks: code of your own that the training recipe calls at fixed points of a run, without
changing the recipe. Subclass `TrainingCallback`, override the hooks you need, and either pass
instances to `run_experiment(..., callbacks=[...])` or name the class for `train.py` (and
`distributed_train.sh`, whose every rank runs train.py) in an environment variable:

    H2O_LLM_STUDIO_TRAINING_CALLBACKS=my_module:MyCallback[,other_module:Other]

Each `module:attribute` is imported (the module must be importable, e.g. through PYTHONPATH)
and called with no arguments to make the callback. The tests inject stops, crashes and slow
preprocessing this way (tests/support/fault_plugin.py); docs/distributed.md has an example.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from llm_studio.config.settings import ConfigError
from llm_studio.env import setting_env

if TYPE_CHECKING:
    from llm_studio.training.loop import FineTuneRecipe

CALLBACKS_ENV = "H2O_LLM_STUDIO_TRAINING_CALLBACKS"


class TrainingCallback:
    """The hooks, each doing nothing unless overridden. `recipe` is the running
    `FineTuneRecipe`: `recipe.position.step`, `recipe.ddp.rank`, `recipe.cfg` and so on."""

    def on_read_data(self, recipe: FineTuneRecipe) -> None:
        """Before the data is read, split and sampled, by the process that reads it (rank 0
        of a distributed run; not at all when a resumed run loads its preprocessing cache)."""

    def on_step_end(self, recipe: FineTuneRecipe) -> None:
        """After each training step, its validation and saved resume state included."""


def load_callbacks(spec: str | None = None) -> list[TrainingCallback]:
    """The callbacks `spec` names (by default H2O_LLM_STUDIO_TRAINING_CALLBACKS's value)."""
    spec = setting_env(CALLBACKS_ENV) if spec is None else spec
    return [_make(name.strip()) for name in (spec or "").split(",") if name.strip()]


def _make(name: str) -> TrainingCallback:
    module_name, _, attribute = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"{CALLBACKS_ENV}: cannot load {name!r} (expected module:Class): {exc}"
        ) from exc
    return factory()
