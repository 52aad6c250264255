"""Causal Language Modeling: fine-tune a chat LLM on prompts and answers."""

from __future__ import annotations

from dataclasses import dataclass

from llm_studio.config.base import BaseConfig
from llm_studio.config.settings import setting


@dataclass
class CausalLMConfig(BaseConfig):
    problem_type: str = setting(
        "text_causal_language_modeling", tip="Causal Language Modeling: fine-tune a chat LLM."
    )
