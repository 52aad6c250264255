"""The settings every problem type has; each problem type's module builds its config on this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from llm_studio.config.sections import (
    ArchitectureSection,
    AugmentationSection,
    DatasetSection,
    DataSourceSection,
    EnvironmentSection,
    LoggingSection,
    PredictionSection,
    TokenizerSection,
    TrainingSection,
)
from llm_studio.config.settings import SettingsGroup, section, setting

SECTION_NAMES = (
    "dataset",
    "tokenizer",
    "architecture",
    "training",
    "augmentation",
    "prediction",
    "environment",
    "logging",
)


class AugmentationSettings(Protocol):
    """What every problem type's augmentation section has (label types have no chains)."""

    token_mask_probability: float
    neftune_noise_alpha: float


class PredictionSettings(Protocol):
    """What every problem type's prediction section has (label types generate no text)."""

    metric: str
    batch_size_inference: int


@dataclass
class BaseConfig(SettingsGroup):
    """Settings every problem type has. Subclasses set `problem_type` and may swap sections."""

    problem_type: str = setting("", tip="What kind of model to train.")
    experiment_name: str = setting("experiment", tip="Name of the experiment.")
    llm_backbone: str = setting(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        free_text=True,
        tip="Hub name or local folder of the pretrained model to fine-tune.",
    )
    output_directory: str = setting(
        "output/user/experiment", tip="Folder the experiment writes everything to."
    )
    # Typed as what every problem type has; the defaults are causal language modeling's.
    dataset: DataSourceSection = section(DatasetSection)
    tokenizer: TokenizerSection = section(TokenizerSection)
    architecture: ArchitectureSection = section(ArchitectureSection)
    training: TrainingSection = section(TrainingSection)
    augmentation: AugmentationSettings = section(AugmentationSection)
    prediction: PredictionSettings = section(PredictionSection)
    environment: EnvironmentSection = section(EnvironmentSection)
    logging: LoggingSection = section(LoggingSection)
