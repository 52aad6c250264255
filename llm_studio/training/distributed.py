"""Distributed data parallel (DDP) training: `bash distributed_train.sh N -Y cfg.yaml`.

torchrun starts N copies of train.py and tells each its place with RANK, LOCAL_RANK and
WORLD_SIZE. Every rank runs the same loop (llm_studio/training/loop.py) on its own GPU (the
LOCAL_RANK-th visible one; NCCL) or on the CPU (gloo). What differs from one process is here:

- Batches. Every rank loads the same global batch (batch_size per rank x world size, from the
  seeded shuffle one process would use) and keeps every world_size-th row from its rank on.
  The ranks' rows together are exactly a single process's batch of the global size: same
  samples, same padding (padding_quantile is taken over the global batch), same token masks.
- Loss. Each rank's loss is weighted by its share of what the loss averages over (labelled
  tokens or samples, `Task.loss_weight`), so the gradient DDP averages over the ranks is the
  gradient of the global batch's loss: a token-averaged loss stays averaged over all tokens.
- Validation is sharded by batches (rank r takes batches r, r + N, ...); rank 0 gathers the
  rows back in their order and alone computes the metric and writes the results.
- Only rank 0 writes into the experiment folder. It reads, splits and samples the data once;
  the other ranks wait at a barrier and load its cache file.

In a single process (no torchrun, or one process per node and one node) every helper here
does nothing, and the loop runs exactly as without DDP. docs/distributed.md has the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from llm_studio.config.settings import ConfigError

log = logging.getLogger("llm_studio")

T = TypeVar("T")

# How long a collective may wait for the other ranks (seconds). Long by default: rank 0 alone
# saves checkpoints and computes the metric while the others wait; tests set it short.
TIMEOUT_ENV = "LLM_STUDIO_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800
DATA_CACHE = ".data_cache.pkl"  # in the experiment folder; deleted once every rank has read it


class _DDP(DistributedDataParallel):
    """DDP that lends its model's attributes, so a task's loss can call model.config or
    model.disable_adapter() on the wrapped model as on the model itself."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls) -> Distributed:
        """This process's place as torchrun set it; a single process without torchrun."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
        )

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, charts, writes the status and saves."""
        return self.rank == 0

    # --- the process group ---
    def start(self, device: torch.device) -> None:
        """Join the process group: NCCL on GPUs, gloo on the CPU."""
        self.device = device
        if not self.active:
            return
        if device.type == "cuda":
            if device.index >= torch.cuda.device_count():
                raise ConfigError(
                    f"distributed_train.sh: local rank {device.index} has no GPU; only "
                    f"{torch.cuda.device_count()} visible (CUDA_VISIBLE_DEVICES)"
                )
            torch.cuda.set_device(device)
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            timeout=timeout,
            device_id=device if device.type == "cuda" else None,
        )
        log.info(
            "DDP: %d processes, backend %s; the global batch is batch_size x %d",
            *(self.world_size, dist.get_backend(), self.world_size),
        )

    def close(self) -> None:
        """Leave the process group after a finished or stopped run. No barrier: the other
        ranks may leave while rank 0 still saves."""
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    # --- model and batches ---
    def wrap(self, model: torch.nn.Module, find_unused_parameters: bool) -> torch.nn.Module:
        """The model the training steps run: in DDP, wrapped so backward all-reduces the
        gradients. Validation and saving use the model itself."""
        if not self.active:
            return model
        return _DDP(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters,
            forward_sync_buffers=False,  # equal at the start and no batch norm: none to sync
        )

    def gradient_sync(self, model: torch.nn.Module, sync: bool):
        """A context for forward and backward: the batches that only accumulate gradients skip
        DDP's all-reduce (model.no_sync()); the one before the optimizer step syncs."""
        if self.active and not sync:
            return model.no_sync()
        return contextlib.nullcontext()

    def rows_of_rank(self, batch: dict, weigh: Callable[[dict], float]) -> tuple[dict, float]:
        """This rank's rows of a global batch (every world_size-th, from its rank on), and the
        factor for its loss: its share of the batch's loss weight, times the world size. DDP
        averages the gradients over the ranks, so they add up to the global batch's gradient."""
        if not self.active:
            return batch, 1.0
        mine = {k: v[self.rank :: self.world_size] for k, v in batch.items()}
        return mine, self.world_size * weigh(mine) / max(weigh(batch), 1)

    # --- agreeing and collecting ---
    def any_rank(self, flag: bool) -> bool:
        """True on every rank when it is true on one: every rank stops after the same step."""
        if not self.active:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the ranks (all of them get the result)."""
        if not self.active or not values:
            return values
        tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return dict(zip(values, (tensor / self.world_size).tolist()))

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's `obj`, in rank order, on rank 0; None on the other ranks."""
        if not self.active:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def from_main(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (a drawn seed, say)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def read_data_once(self, folder: Path, read: Callable[[], T], task) -> T:
        """`read()` (read, split and sample the data) on rank 0 only; the others wait for its
        cache file and load it. The task's state goes along: reading data may set it (the
        number of classes a classification task infers from its train data)."""
        if not self.active:
            return read()
        cache = Path(folder) / DATA_CACHE
        if self.is_main:
            data = read()
            state = {k: v for k, v in vars(task).items() if k not in ("cfg", "device")}
            with open(cache, "wb") as fh:
                pickle.dump((data, state), fh, protocol=pickle.HIGHEST_PROTOCOL)
        dist.barrier()
        if not self.is_main:
            with open(cache, "rb") as fh:
                data, state = pickle.load(fh)
            vars(task).update(state)
        dist.barrier()
        if self.is_main:
            cache.unlink(missing_ok=True)
        return data


def map_batches(fn: Callable[[list], list], items: list, batch_size: int) -> list | None:
    """`fn(batch)` gives one result per item of a batch. In one process: the results of all
    batches. In DDP: rank r runs batches r, r + N, ... and rank 0 gets every result in the
    items' order; the other ranks get None. A batch is the same in both, so are its results."""
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [result for batch in batches for result in fn(batch)]
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = [fn(batch) for batch in batches[rank::world]]
    gathered = [None] * world if rank == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    if rank != 0:
        return None
    return [result for i in range(len(batches)) for result in gathered[i % world][i // world]]
