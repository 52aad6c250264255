"""The training batches the recipe steps through: the loader of one epoch, the epochs from a
resume position on, and the batches grouped by optimizer update."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from llm_studio.data.batching import EpochBatches, sample_length
from llm_studio.data.readers import DataError
from llm_studio.training.loader_workers import ignore_stop_signals
from llm_studio.training.resume import TrainingPosition

log = logging.getLogger("llm_studio")

# (epoch index, batch index in the epoch, batch)
IndexedBatch = tuple[int, int, dict[str, torch.Tensor]]


def build_train_loader(
    samples: Any, cfg: Any, collate: Callable[[list], dict], world_size: int = 1
) -> DataLoader:
    """Shuffled by (seed, epoch) (`EpochBatches`), so a seed fixes the batch order; with
    length_grouped_batches, each batch holds samples of similar length.

    A batch is the global batch, batch_size per process x processes: in DDP every rank loads
    it and keeps its own rows, so the batches are those of one process of that batch size. A
    last batch too small to give every rank a row is left out.
    """
    batch_size = cfg.training.batch_size * world_size
    drop_last = cfg.training.drop_last_batch and len(samples) >= batch_size
    if 0 < len(samples) % batch_size < world_size:
        log.info(
            "The last %d training samples of each epoch are left out: fewer than one per process",
            len(samples) % batch_size,
        )
        drop_last = True
    order = EpochBatches(
        [sample_length(samples[i]) for i in range(len(samples))],
        batch_size,
        cfg.environment.seed,
        drop_last,
        group_by_length=cfg.training.length_grouped_batches,
    )
    loader = DataLoader(
        samples,
        batch_sampler=order,
        collate_fn=collate,
        num_workers=cfg.environment.number_of_workers,
        worker_init_fn=ignore_stop_signals,  # a stop is the trainer's to carry out, not theirs
        # Its own generator seeds the workers: drawing from the global RNG instead would
        # shift dropout's random stream and break exact resumes.
        generator=torch.Generator().manual_seed(cfg.environment.seed),
    )
    if len(loader) == 0:
        raise DataError(f"{len(samples)} training samples cannot feed {world_size} processes")
    return loader


def epochs_of_batches(
    loader: DataLoader, samples: Any, position: TrainingPosition, epochs: int
) -> Iterator[IndexedBatch]:
    """(epoch index, batch index, batch) of every epoch from the resume position on."""
    for epoch_index in range(position.epoch_index, epochs):
        # Seeded per epoch, so a resumed run sees the same batches in the same order.
        start = position.batch_in_epoch if epoch_index == position.epoch_index else 0
        loader.batch_sampler.set_epoch(epoch_index, start=start)  # type: ignore[union-attr]
        samples.set_epoch(epoch_index)
        for offset, batch in enumerate(loader):
            yield epoch_index, start + offset, batch


def accumulation_windows(
    batches: Iterable[IndexedBatch], accumulation: int, step: int, total_steps: int
) -> Iterator[list[IndexedBatch]]:
    """The batches grouped by optimizer update: one ends every `accumulation` global steps
    and at the last step (a window may span two epochs)."""
    window: list[IndexedBatch] = []
    for item in batches:
        window.append(item)
        step += 1
        if step % accumulation == 0 or step == total_steps:
            yield window
            window = []
    if window:
        yield window


def real_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens of a batch that are not padding (DPO's chosen and rejected together)."""
    return sum(int(v.sum()) for k, v in batch.items() if k.endswith("attention_mask"))
