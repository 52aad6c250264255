"""Training-time data: conversations encoded per item, with the chain augmentations applied.

Validation and inference never go through here, so augmentations are off there by design.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from llm_studio.data.prompt_format import Conversation
from llm_studio.data.tokenization import EncodedSample


def skip_parents(conv: Conversation, probability: float, rng: np.random.Generator) -> Conversation:
    """Walking back from the last turn, stop taking earlier turns with `probability` at each."""
    keep = 1
    for _ in range(len(conv.prompts) - 1):
        if rng.random() < probability:
            break
        keep += 1
    return Conversation(conv.system, conv.prompts[-keep:], conv.answers[-keep:])


def random_parent(conv: Conversation, other: Conversation) -> Conversation:
    """Put an unrelated sample's turn in front, as if the user had asked it first."""
    return Conversation(
        conv.system,
        (other.prompts[-1],) + conv.prompts,
        (other.answers[-1],) + conv.answers,
    )


@dataclass(frozen=True)
class ChainAugmentation:
    """The chances of the chain augmentations: the augmentation section's, or these zeros for
    problem types without chains."""

    skip_parent_probability: float = 0.0
    random_parent_probability: float = 0.0


class TrainingSamples(Dataset):
    """Encodes each conversation; with augmentations on, anew for every epoch and item."""

    def __init__(
        self,
        conversations: list[Conversation],
        encode: Callable[[Conversation], EncodedSample],
        augmentation_cfg,
        seed: int,
    ):
        self.conversations = conversations
        self.encode = encode
        self.skip_parent_probability = augmentation_cfg.skip_parent_probability
        self.random_parent_probability = augmentation_cfg.random_parent_probability
        self.seed = seed
        self.epoch = 0
        self._cache = None if self.augments else [encode(c) for c in conversations]

    @property
    def augments(self) -> bool:
        return self.skip_parent_probability > 0 or self.random_parent_probability > 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.conversations)

    def conversation(self, index: int) -> Conversation:
        """The conversation as trained on in this epoch (after augmentation)."""
        conv = self.conversations[index]
        if not self.augments:
            return conv
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.skip_parent_probability > 0:
            conv = skip_parents(conv, self.skip_parent_probability, rng)
        if len(self.conversations) > 1 and rng.random() < self.random_parent_probability:
            other = int(rng.integers(len(self.conversations) - 1))
            other += other >= index  # never the sample itself
            conv = random_parent(conv, self.conversations[other])
        return conv

    def __getitem__(self, index: int) -> EncodedSample:
        if self._cache is not None:
            return self._cache[index]
        return self.encode(self.conversation(index))
