"""Sequence To Sequence Modeling: an encoder-decoder backbone writes the answer."""

from __future__ import annotations

from dataclasses import dataclass

from llm_studio.config.base import BaseConfig
from llm_studio.config.sections import ChatDatasetSection
from llm_studio.config.settings import section, setting


@dataclass
class Seq2SeqConfig(BaseConfig):
    problem_type: str = setting(
        "text_sequence_to_sequence_modeling",
        tip="Sequence To Sequence Modeling: fine-tune an encoder-decoder model.",
    )
    llm_backbone: str = setting(
        "google/flan-t5-small",
        free_text=True,
        tip="Hub name or local folder of the pretrained encoder-decoder model to fine-tune.",
    )
    # The encoder reads the prompt and the decoder learns only the answer: no prompt labels.
    dataset: ChatDatasetSection = section(ChatDatasetSection)
