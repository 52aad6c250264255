"""The problem types, by the name `problem_type` takes in YAML; each picks its config class."""

from __future__ import annotations

from llm_studio.config.base import SECTION_NAMES, BaseConfig
from llm_studio.config.causal_lm import CausalLMConfig
from llm_studio.config.classification import ClassificationConfig, RegressionConfig
from llm_studio.config.dpo import DPOConfig
from llm_studio.config.seq2seq import Seq2SeqConfig

PROBLEM_TYPES: dict[str, type[BaseConfig]] = {
    "text_causal_language_modeling": CausalLMConfig,
    "text_dpo_modeling": DPOConfig,
    "text_sequence_to_sequence_modeling": Seq2SeqConfig,
    "text_causal_classification_modeling": ClassificationConfig,
    "text_causal_regression_modeling": RegressionConfig,
}

PROBLEM_TYPE_LABELS = {
    "text_causal_language_modeling": "Causal Language Modeling",
    "text_dpo_modeling": "DPO Modeling",
    "text_sequence_to_sequence_modeling": "Sequence To Sequence Modeling",
    "text_causal_classification_modeling": "Causal Classification Modeling",
    "text_causal_regression_modeling": "Causal Regression Modeling",
}

__all__ = ["PROBLEM_TYPES", "PROBLEM_TYPE_LABELS", "SECTION_NAMES", "BaseConfig", "CausalLMConfig"]
