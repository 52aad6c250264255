"""Causal LM losses, looked up by the name the config uses."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from llm_studio.data.tokenization import IGNORE_INDEX


def _token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross entropy of next-token prediction, and the mask of counted tokens."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    losses = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shift_labels.shape)
    return losses, shift_labels != IGNORE_INDEX


def token_averaged_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Every labelled token of the batch weighs the same."""
    losses, mask = _token_losses(logits, labels)
    return (losses * mask).sum() / mask.sum().clamp(min=1)


def sample_averaged_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's mean token loss, then the mean over samples: short answers weigh as much."""
    return per_sample_loss(logits, labels).mean()


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    losses, mask = _token_losses(logits, labels)
    return (losses * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "TokenAveragedCrossEntropy": token_averaged_cross_entropy,
    "SampleAveragedCrossEntropy": sample_averaged_cross_entropy,
}
