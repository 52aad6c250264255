"""Causal Language Modeling: fine-tune a chat LLM on prompts and answers."""

from __future__ import annotations

from dataclasses import dataclass

from llm_studio.config.base import BaseConfig
from llm_studio.config.sections import TrainingSection
from llm_studio.config.settings import section, setting


@dataclass
class CausalLMTrainingSection(TrainingSection):
    sample_packing: bool = setting(
        False,
        tip="Padding-free batches: a batch's samples in one row, each attending only to "
        "itself (positions restart per sample), so no padding is computed. Exact; falls back "
        "to padded batches for a backbone that cannot keep packed samples apart.",
    )


@dataclass
class CausalLMConfig(BaseConfig):
    problem_type: str = setting(
        "text_causal_language_modeling", tip="Causal Language Modeling: fine-tune a chat LLM."
    )
    training: CausalLMTrainingSection = section(CausalLMTrainingSection)
