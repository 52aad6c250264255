"""What a problem type does in training. The loop calls these methods and never branches on the
problem type; each type's module implements them, sharing code through the causal LM task."""

from __future__ import annotations

from typing import Protocol

import pandas as pd
import torch
from torch.utils.data import Dataset

from llm_studio.config.base import BaseConfig
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.metrics.text import Metric
from llm_studio.models.backbone import LoadedBackbone


class ValidationOutcome(Protocol):
    loss: float
    metric_value: float
    charts: dict[str, float]  # extra validation charts, e.g. DPO reward accuracy

    def write(self, folder: ExperimentFolder, metric: Metric) -> None: ...


class Task(Protocol):
    cfg: BaseConfig
    device: torch.device

    def build_items(self, df: pd.DataFrame, source: str) -> list:
        """One training/validation item per row of a dataframe."""

    def personalize(self, items: list) -> list:
        """Apply dataset.personalize to training items."""

    def load(self) -> LoadedBackbone:
        """The model, ready to train (adapters, frozen layers, checkpointing), and tokenizer."""

    def training_dataset(self, items: list, seed: int) -> Dataset: ...

    def collate(self, samples: list) -> dict[str, torch.Tensor]: ...

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of a batch, and extra values to chart under train/."""

    def loss_tokens(self, batch: dict) -> int:
        """The batch's loss-bearing predictions (tokens, or rows for a head): the throughput."""

    def loss_weight(self, batch: dict) -> int:
        """What the loss of `batch` averages over (labelled tokens or samples): in DDP each
        rank's loss counts by its share of the global batch's weight."""

    def validate(self, model, items: list, metric: Metric) -> ValidationOutcome: ...

    def save(self, model, folder: ExperimentFolder, dest=None, adapter: bool = True) -> None: ...

    def write_insights(self, folder: ExperimentFolder, batch: dict) -> None: ...
