"""Causal Classification and Regression Modeling: a head on a causal LM's last hidden state."""

from __future__ import annotations

from dataclasses import dataclass

from llm_studio.config.base import BaseConfig
from llm_studio.config.registries import (
    CLASSIFICATION_LOSSES,
    CLASSIFICATION_METRICS,
    REGRESSION_LOSSES,
    REGRESSION_METRICS,
)
from llm_studio.config.sections import DataSourceSection, TrainingSection
from llm_studio.config.settings import SettingsGroup, section, setting


@dataclass
class LabelDatasetSection(DataSourceSection):
    answer_column: list[str] = setting(
        ["label"],
        tip="Column(s) with the target. Classification: integer class ids starting at 0; "
        "several columns mean multi-label (each 0 or 1).",
    )


@dataclass
class ClassificationDatasetSection(LabelDatasetSection):
    num_classes: int = setting(
        0, range=(0, 10000), tip="Number of classes; 0 infers it from the train data."
    )


@dataclass
class LabelAugmentationSection(SettingsGroup):
    # Chain augmentations need answers, which these types do not write.
    token_mask_probability: float = setting(
        0.0, range=(0.0, 0.9), tip="Chance of replacing an input token by the mask token."
    )
    neftune_noise_alpha: float = setting(
        0.0, range=(0.0, 50.0), tip="NEFTune: noise added to the input embeddings in training."
    )


# A label often goes with a length (short "no", long complaints): batches grouped by length
# would then hold one label each, and the loss swings from batch to batch. Off for labels.
def _label_length_grouping():
    return setting(
        False,
        tip="Batch samples of similar length together (faster: less padding). Off by default "
        "for labels, which often go with a length: batches would then hold one label each.",
    )


@dataclass
class ClassificationTrainingSection(TrainingSection):
    length_grouped_batches: bool = _label_length_grouping()
    loss_function: str = setting(
        "CrossEntropy",
        choices=CLASSIFICATION_LOSSES.names,
        tip="CrossEntropy for one class per row; BinaryCrossEntropy for binary or multi-label.",
    )


@dataclass
class ClassificationPredictionSection(SettingsGroup):
    metric: str = setting("AUC", choices=CLASSIFICATION_METRICS.names, tip="Validation metric.")
    batch_size_inference: int = setting(
        0, range=(0, 512), tip="Validation batch size; 0 uses the training batch size."
    )


@dataclass
class ClassificationConfig(BaseConfig):
    problem_type: str = setting(
        "text_causal_classification_modeling",
        tip="Causal Classification Modeling: predict a class from the text.",
    )
    dataset: ClassificationDatasetSection = section(ClassificationDatasetSection)
    training: ClassificationTrainingSection = section(ClassificationTrainingSection)
    augmentation: LabelAugmentationSection = section(LabelAugmentationSection)
    prediction: ClassificationPredictionSection = section(ClassificationPredictionSection)


@dataclass
class RegressionTrainingSection(TrainingSection):
    length_grouped_batches: bool = _label_length_grouping()
    loss_function: str = setting(
        "MSELoss", choices=REGRESSION_LOSSES.names, tip="Squared or absolute error."
    )


@dataclass
class RegressionPredictionSection(SettingsGroup):
    metric: str = setting("MSE", choices=REGRESSION_METRICS.names, tip="Validation metric.")
    batch_size_inference: int = setting(
        0, range=(0, 512), tip="Validation batch size; 0 uses the training batch size."
    )


@dataclass
class RegressionConfig(BaseConfig):
    problem_type: str = setting(
        "text_causal_regression_modeling",
        tip="Causal Regression Modeling: predict a number from the text.",
    )
    dataset: LabelDatasetSection = section(LabelDatasetSection)
    training: RegressionTrainingSection = section(RegressionTrainingSection)
    augmentation: LabelAugmentationSection = section(LabelAugmentationSection)
    prediction: RegressionPredictionSection = section(RegressionPredictionSection)


def label_errors(cfg: BaseConfig) -> list[str]:
    """What a classification config asks that its loss cannot do: checked before launch (the
    config checks) and again when the task is built (a YAML run straight through train.py)."""
    if not isinstance(cfg, ClassificationConfig):
        return []
    columns = cfg.dataset.answer_column
    columns = [columns] if isinstance(columns, str) else list(columns)
    loss, n = cfg.training.loss_function, cfg.dataset.num_classes
    if len(columns) > 1:  # one class per answer column: multi-label
        errors = []
        if loss != "BinaryCrossEntropy":
            errors.append(
                f"training.loss_function: {loss} picks one class per row, but "
                f"{len(columns)} answer columns mean multi-label; use BinaryCrossEntropy"
            )
        if n and n != len(columns):
            errors.append(
                f"dataset.num_classes: {n}, but multi-label has one class per answer column "
                f"({len(columns)}); set 0 or {len(columns)}"
            )
        return errors
    if loss == "CrossEntropy" and n == 1:
        return [
            "dataset.num_classes: CrossEntropy needs at least 2 classes "
            "(BinaryCrossEntropy predicts a binary label with one output)"
        ]
    if loss == "BinaryCrossEntropy" and n > 2:
        return [
            f"dataset.num_classes: {n} classes in one answer column need CrossEntropy; "
            "BinaryCrossEntropy with one column is binary (labels 0 and 1)"
        ]
    return []
