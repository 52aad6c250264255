"""Training tasks, one per problem type; its `ProblemType.task` names the class."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from llm_studio.config.problem_types import BaseConfig, problem_type_of

if TYPE_CHECKING:  # a run imports only its own task's module
    import torch

    from llm_studio.training.tasks.base import Task


def build_task(cfg: BaseConfig, device: torch.device) -> Task:
    # Imported on demand, so a run loads only its own problem type's code.
    module, _, name = problem_type_of(cfg).task.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)(cfg, device)
