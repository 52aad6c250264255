"""Which training samples go into which batch, in which order, and padding-free packing.

The order of an epoch follows from (seed, epoch) alone, so a resumed run sees the same batches
in the same order and can start in the middle of an epoch without collating the skipped ones.
Length-grouped batches put samples of similar length together (so a batch pads little) while
the order of the batches stays random.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler

from llm_studio.data.tokenization import IGNORE_INDEX

# Length grouping sorts samples by length inside chunks of this many batches, then shuffles
# the batches: big enough to find similar lengths, small enough to keep epochs varied.
GROUP_BATCHES = 50


def sample_length(sample) -> int:
    """Tokens a sample puts into a batch (both answers of a preference pair)."""
    if hasattr(sample, "chosen"):
        return len(sample.chosen.input_ids) + len(sample.rejected.input_ids)
    return len(sample.input_ids)


class EpochBatches(Sampler[list[int]]):
    """The batches (lists of sample indices) of one epoch, seeded by (seed, epoch).

    `set_epoch(epoch, start=k)` selects the epoch and skips its first k batches (resume).
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int,
        drop_last: bool,
        group_by_length: bool,
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.group_by_length = group_by_length
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        if self.group_by_length:
            chunk = self.batch_size * GROUP_BATCHES
            order = np.concatenate(
                [
                    part[np.argsort(-self.lengths[part], kind="stable")]
                    for part in np.split(order, range(chunk, len(order), chunk))
                ]
            )
        batches = [
            order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)
        ]
        last = batches.pop() if len(batches[-1]) < self.batch_size else None
        if self.group_by_length:  # the longest batches would otherwise open every chunk
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if last is not None and not self.drop_last:
            batches.append(last)
        return batches

    def __iter__(self):
        return iter(self.batches()[self.start :])

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


def pack_rows(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Padding-free: the batch's right-padded rows as one row of their real tokens, with
    positions restarting at 0 for each sample. Given position_ids and no attention mask,
    transformers keeps attention inside each sample (SDPA, eager, flash-attention varlen).

    The first label of each sample is dropped: in the packed row it would be the target of the
    previous sample's last token, which the unpacked batch never predicts. `sample_ids` says
    which sample each token belongs to (per-sample losses)."""
    real = batch["attention_mask"].bool()
    lengths = real.sum(dim=1)
    labels = batch["labels"].masked_fill(
        torch.arange(real.shape[1], device=real.device) == 0, IGNORE_INDEX
    )
    positions = torch.cumsum(real, dim=1) - 1
    rows = torch.arange(len(lengths), device=real.device).unsqueeze(1).expand_as(real)
    return {
        "input_ids": batch["input_ids"][real].unsqueeze(0),
        "labels": labels[real].unsqueeze(0),
        "position_ids": positions[real].unsqueeze(0),
        "sample_ids": rows[real].unsqueeze(0),
    }
