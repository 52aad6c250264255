"""Training tasks, one per problem type, looked up by the config's `problem_type`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from llm_studio.config.base import BaseConfig

if TYPE_CHECKING:  # a run imports only its own task's module
    import torch

    from llm_studio.training.tasks.base import Task

# Imported on demand, so a run loads only its own problem type's code.
TASKS = {
    "text_causal_language_modeling": "llm_studio.training.tasks.causal_lm:CausalLMTask",
    "text_dpo_modeling": "llm_studio.training.tasks.dpo:DPOTask",
    "text_sequence_to_sequence_modeling": "llm_studio.training.tasks.seq2seq:Seq2SeqTask",
    "text_causal_classification_modeling": "llm_studio.training.tasks.classification:LabelTask",
    "text_causal_regression_modeling": "llm_studio.training.tasks.classification:LabelTask",
}


def build_task(cfg: BaseConfig, device: torch.device) -> Task:
    module, _, name = TASKS[cfg.problem_type].partition(":")
    return getattr(importlib.import_module(module), name)(cfg, device)
