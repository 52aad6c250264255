"""DPO Modeling: learn from pairs of a preferred and a rejected answer to the same prompt."""

from __future__ import annotations

from dataclasses import dataclass

from llm_studio.config.base import BaseConfig
from llm_studio.config.registries import PREFERENCE_LOSSES
from llm_studio.config.sections import DatasetSection, TrainingSection
from llm_studio.config.settings import section, setting


@dataclass
class DPODatasetSection(DatasetSection):
    rejected_prompt_column: str | None = setting(
        None,
        optional=True,
        tip="Column with the prompt of the rejected answer; None uses the chosen answer's prompt.",
    )
    rejected_answer_column: str = setting(
        "rejected_response", tip="Column with the rejected (not preferred) answer."
    )


@dataclass
class DPOTrainingSection(TrainingSection):
    loss_function: str = setting(
        "DPOLoss",
        choices=PREFERENCE_LOSSES.names,
        tip="The preference loss (see the DPO family's papers).",
    )
    learning_rate: float = setting(
        1e-4, range=(1e-7, 1e-1), step=1e-5, log_scale=True, tip="Step size of weight updates."
    )
    beta: float = setting(
        0.2,
        range=(0.01, 5.0),
        step=0.01,
        tip="How far the model may move from the reference: higher keeps it closer.",
    )
    simpo_gamma: float = setting(
        1.0,
        range=(0.0, 10.0),
        step=0.1,
        shown_if={"loss_function": "SimPOLoss"},
        tip="SimPO's target reward margin.",
    )


@dataclass
class DPOConfig(BaseConfig):
    problem_type: str = setting(
        "text_dpo_modeling", tip="DPO Modeling: learn from preferred and rejected answers."
    )
    dataset: DPODatasetSection = section(DPODatasetSection)
    training: DPOTrainingSection = section(DPOTrainingSection)
