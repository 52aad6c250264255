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
- Only rank 0 writes into the experiment folder. It preprocesses the data once, into a cache
  the other ranks load (llm_studio/training/preprocessing.py).

With `data_parallel_engine: fsdp` the same holds, but the model is sharded with torch's FSDP2
(`fully_shard`) instead of replicated: each decoder layer is one unit whose weights are gathered
for its forward and backward and sharded again after, gradients are reduce-scattered (averaged,
as DDP does) and the optimizer keeps only its shard. Every forward is then a collective, so all
ranks run validation batches in lockstep (`map_batches` pads the shorter shares) and generate
with synced_gpus. Saving gathers the full weights to rank 0 (`consolidated`), into a copy of the
model that lives on the meta device between saves, so checkpoints are the same HF folders.

With `data_parallel_engine: deepspeed` a DeepSpeed ZeRO engine (stage 2 or 3) runs the training
steps: `wrap` returns it, and the loop's backward and optimizer step go through it (`backward`,
`zero_engine`); our optimizer and scheduler stay the ones the loop built, so the learning rate is
ours. Stage 2 shards the optimizer state and gradients and keeps whole weights on every rank
(validation and saving as in DDP); stage 3 shards the weights too, which then behaves like FSDP:
lockstep validation, synced generation, weights gathered to rank 0 for saving. The resume state
holds DeepSpeed's own checkpoint of the ZeRO partitions.

In a single process (no torchrun, or one process per node and one node) every helper here
does nothing, and the loop runs exactly as without DDP. docs/distributed.md has the rest.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from llm_studio.config.base import BaseConfig
from llm_studio.config.settings import ConfigError
from llm_studio.env import setting_env
from llm_studio.training.deepspeed_config import prepare_cpu_backend, zero_config

log = logging.getLogger("llm_studio")

T = TypeVar("T")

# How long a collective may wait for the other ranks (seconds). Long by default: rank 0 alone
# saves checkpoints and computes the metric while the others wait; tests set it short.
TIMEOUT_ENV = "H2O_LLM_STUDIO_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800


class _DDP(DistributedDataParallel):
    """DDP that lends its model's attributes, so a task's loss can call model.config or
    model.disable_adapter() on the wrapped model as on the model itself."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


# True while this process trains a model whose weights are sharded (FSDP, ZeRO-3): every
# forward is a collective then.
_sharded = False
ZERO_TAG = "zero"  # the tag of DeepSpeed's checkpoint inside the resume state


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    engine: str = "ddp"  # or "fsdp" or "deepspeed": see `wrap`
    # FSDP, ZeRO-3: rank 0's copy of the model on the meta device (no memory), filled to save.
    _skeleton: torch.nn.Module | None = None
    # DeepSpeed: the engine that runs backward and the optimizer step, and its ZeRO stage.
    zero_engine: Any = None  # deepspeed's engine (untyped), when ZeRO runs
    zero_stage: int = 0

    @property
    def sharded(self) -> bool:
        """FSDP shards this process's model."""
        return self.active and self.engine == "fsdp"

    @property
    def state_engine(self) -> str:
        """The engine as the resume state records it (its optimizer state loads only into the
        same): empty for one process, the ZeRO stage with deepspeed."""
        if not self.active:
            return ""
        return f"deepspeed-zero{self.zero_stage}" if self.engine == "deepspeed" else self.engine

    @property
    def zero3(self) -> bool:
        """DeepSpeed ZeRO-3 partitions this process's weights."""
        return self.zero_engine is not None and self.zero_stage == 3

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
        timeout = timedelta(seconds=float(setting_env(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S))
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            timeout=timeout,
            device_id=device if device.type == "cuda" else None,
        )
        log.info(
            "%s: %d processes, backend %s; the global batch is batch_size x %d",
            *(self.engine.upper(), self.world_size, dist.get_backend(), self.world_size),
        )

    def close(self) -> None:
        """Leave the process group after a finished or stopped run. No barrier: the other
        ranks may leave while rank 0 still saves."""
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    # --- model and batches ---
    def wrap(
        self, model: torch.nn.Module, cfg: BaseConfig, build_optimizer
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """The model the training steps run, and the optimizer the loop's scheduler drives
        (`build_optimizer(model, cfg.training)`, built when the engine needs it). DDP: a wrapper
        whose backward all-reduces the gradients; validation and saving use the model itself.
        FSDP: the model itself, sharded in place (the optimizer is built on the shards).
        DeepSpeed: its engine around the model and the optimizer."""
        if not self.active:
            return model, build_optimizer(model, cfg.training)
        environment = cfg.environment
        if self.engine == "fsdp":
            model = self._shard(model, environment.fsdp_sharding)
            return model, build_optimizer(model, cfg.training)
        if self.engine == "deepspeed":
            return self._zero(model, cfg, build_optimizer(model, cfg.training))
        trained = _DDP(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=environment.find_unused_parameters,
            forward_sync_buffers=False,  # equal at the start and no batch norm: none to sync
        )
        return trained, build_optimizer(model, cfg.training)

    def _zero(
        self, model: torch.nn.Module, cfg: BaseConfig, optimizer: torch.optim.Optimizer
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """DeepSpeed ZeRO around our model and optimizer. It steps the optimizer we built, so
        the loop's scheduler (which sets that optimizer's learning rates) stays in charge."""
        global _sharded
        if self.device.type == "cpu":
            prepare_cpu_backend()
        import deepspeed

        self.zero_stage = cfg.environment.deepspeed_zero_stage
        if self.zero_stage == 3 and self.is_main:
            self._skeleton = _meta_copy(model)
        dtype = next(p.dtype for p in model.parameters() if p.requires_grad)
        config = zero_config(cfg, self.zero_stage, dtype)
        deepspeed.init_distributed(dist_backend=dist.get_backend())  # joins our process group
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        self.zero_engine = engine
        _sharded = self.zero_stage == 3
        log.info(
            "DeepSpeed ZeRO stage %d over %d processes (%s optimizer)",
            *(self.zero_stage, self.world_size, type(optimizer).__name__),
        )
        return engine, optimizer

    def backward(self, loss: torch.Tensor) -> None:
        """`loss.backward()`; under DeepSpeed its engine's (it reduces the gradients into its
        partitions). `loss` is already divided by grad_accumulation."""
        if self.zero_engine is not None:
            self.zero_engine.backward(loss, scale_wrt_gas=False)
        else:
            loss.backward()

    def _shard(self, model: torch.nn.Module, sharding: str) -> torch.nn.Module:
        """FSDP2: one unit per decoder layer (the classes transformers marks as not to be
        split), then the whole model for what is left (embeddings, norm, head)."""
        global _sharded
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        if self.is_main:
            self._skeleton = _meta_copy(model)
        shape: tuple[int, ...]
        dims: tuple[str, ...]
        if sharding == "hybrid":  # shard within a node, replicate across nodes
            per_node = int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))
            shape, dims = (self.world_size // per_node, per_node), ("replicate", "shard")
        else:
            shape, dims = (self.world_size,), ("shard",)
        mesh = init_device_mesh(self.device.type, shape, mesh_dim_names=dims)
        layer_classes: set[str] = set()
        for module in model.modules():
            layer_classes.update(getattr(module, "_no_split_modules", None) or ())
        layers = [m for m in model.modules() if type(m).__name__ in layer_classes]
        if not layers:
            raise ConfigError(
                f"environment.data_parallel_engine: fsdp needs a backbone that names its layers "
                f"(_no_split_modules); {type(model).__name__} does not; use ddp"
            )
        names = ", ".join(sorted({type(m).__name__ for m in layers}))  # before FSDP renames them
        for layer in layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        _sharded = True
        log.info(
            "FSDP: %d layers (%s) sharded %s over %d processes",
            *(len(layers), names, sharding, self.world_size),
        )
        return model

    @contextlib.contextmanager
    def consolidated(self, model: torch.nn.Module):
        """The whole model on rank 0 to save (None on the other ranks). FSDP and ZeRO-3: every
        rank sends its shards (all must call this); rank 0 fills its meta copy and empties it
        after."""
        if not (self.sharded or self.zero3):
            yield model if self.is_main else None
            return
        if self.zero3:
            weights = self._gathered(model, trainable_only=False)
        else:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_model_state_dict,
            )

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            weights = get_model_state_dict(model, options=options)
        if not self.is_main:
            yield None
            return
        whole = self._skeleton
        assert whole is not None  # wrap() built it on the main rank
        whole.load_state_dict(weights, assign=True, strict=not self.zero3)  # type: ignore[arg-type]  # gathered on rank 0
        from transformers import PreTrainedModel

        for module in whole.modules():  # assign=True unties tied embeddings; tie them again
            if isinstance(module, PreTrainedModel):
                module.tie_weights()
                break
        try:
            yield whole
        finally:
            _params_to_meta(whole)  # the weights only: non-persistent buffers are not sent again

    def _gathered(self, model: torch.nn.Module, trainable_only: bool) -> dict | None:
        """ZeRO-3: the model's (trainable) parameters whole, on rank 0's CPU (None on the
        others). Gathered one module's own parameters at a time (a linear layer's weight and
        bias in one collective): a whole layer never sits on a GPU beside the shards."""
        import deepspeed

        weights: dict[str, torch.Tensor] = {}
        seen: set[int] = set()  # a tied weight (embeddings and head) once, as named_parameters
        for prefix, module in model.named_modules():
            params = [
                (f"{prefix}.{n}" if prefix else n, p)
                for n, p in module.named_parameters(recurse=False)
                if (p.requires_grad or not trainable_only) and id(p) not in seen
            ]
            seen.update(id(p) for _, p in params)
            if not params:
                continue
            with deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None):
                if self.is_main:
                    for name, param in params:
                        weights[name] = param.detach().to("cpu", copy=True).contiguous()
        return weights if self.is_main else None

    def training_state(
        self, model: torch.nn.Module, optimizer, near: Path
    ) -> tuple[dict, dict | Path] | None:
        """The trainable weights and the optimizer state to save for resuming, whole, on rank
        0 (None on the others). FSDP gathers both from the shards (all ranks must call it).
        DeepSpeed: every rank writes its ZeRO partitions with the engine's save_checkpoint into
        a fresh folder next to `near` (the resume folder), whose path stands for the optimizer
        state; `save_training_state` moves it into place with the rest."""
        if self.zero_engine is not None:
            fresh = None
            if self.is_main:
                for stale in near.parent.glob(f".{near.name}.zero.*"):  # a save cut short
                    shutil.rmtree(stale, ignore_errors=True)
                fresh = tempfile.mkdtemp(dir=near.parent, prefix=f".{near.name}.zero.")
            staging = Path(self.from_main(fresh))  # type: ignore[arg-type]  # the main rank's folder
            self.zero_engine.save_checkpoint(
                str(staging), tag=ZERO_TAG, save_latest=False, exclude_frozen_parameters=True
            )
            dist.barrier()  # every rank's partition is written
            if self.zero3:
                weights = self._gathered(model, trainable_only=True)
            else:
                weights = _trainable(model) if self.is_main else None
            return (weights, staging) if self.is_main else None  # type: ignore[return-value]  # rank 0 has weights
        if not self.sharded:
            if not self.is_main:
                return None
            return _trainable(model), optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        weights = get_model_state_dict(model, options=options)
        optimizer_state = get_optimizer_state_dict(model, optimizer, options=options)
        if not self.is_main:
            return None
        return {n: w.contiguous() for n, w in weights.items() if n in trainable}, optimizer_state  # type: ignore[union-attr]  # full state dicts hold tensors

    def load_training_state(self, model: torch.nn.Module, optimizer, weights: dict, state) -> None:
        """Put saved whole weights and optimizer state back, into this rank's shards.
        DeepSpeed: `state` is the folder of its checkpoint, which holds both."""
        if self.zero_engine is not None:
            path, _ = self.zero_engine.load_checkpoint(
                str(state),
                tag=ZERO_TAG,
                load_module_strict=False,  # the frozen weights are not in it
                load_optimizer_states=True,
                load_lr_scheduler_states=False,  # the loop's scheduler is restored by the loop
            )
            if path is None:
                raise ConfigError(f"--resume: DeepSpeed could not load its state from {state}")
            return
        if not self.sharded:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, value in weights.items():
                    params[name].copy_(value.to(params[name].device))
            optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, strict=True)
        set_model_state_dict(model, weights, options=options)
        set_optimizer_state_dict(model, optimizer, state, options=options)

    def gradient_sync(self, model: torch.nn.Module, sync: bool):
        """A context for forward and backward: the batches that only accumulate gradients skip
        the all-reduce (DDP's no_sync) or reduce-scatter (FSDP); the one before the optimizer
        step syncs. DeepSpeed is told whether the batch ends the accumulation."""
        if self.zero_engine is not None:
            self.zero_engine.set_gradient_accumulation_boundary(sync)
            return contextlib.nullcontext()
        if self.sharded:
            model.set_requires_gradient_sync(sync)  # type: ignore[operator]  # an FSDP2 module
            return contextlib.nullcontext()
        if self.active and not sync:
            return model.no_sync()  # type: ignore[operator]  # a DDP module
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

    def mean_over_ranks(self, values: dict) -> dict:
        """Each value averaged over the ranks (all of them get the result); in one process the
        values as given (a tensor stays a tensor)."""
        if not self.active or not values:
            return values
        numbers = [float(value) for value in values.values()]  # tensors too (the loss)
        tensor = torch.tensor(numbers, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return dict(zip(values, (tensor / self.world_size).tolist(), strict=True))

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's `obj`, in rank order, on rank 0; None on the other ranks."""
        if not self.active:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def from_main(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (a drawn seed, say)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose parameters are meta tensors: the structure without the memory."""
    memo = {
        id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo)


def _params_to_meta(model: torch.nn.Module) -> None:
    """Free the weights of a filled meta copy again (its buffers stay)."""
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            meta = torch.nn.Parameter(torch.empty_like(param, device="meta"), param.requires_grad)
            module.register_parameter(name, meta)


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad
    }


def map_batches(fn: Callable[[list], list], items: list, batch_size: int) -> list | None:
    """`fn(batch)` gives one result per item of a batch. In one process: the results of all
    batches. In DDP: rank r runs batches r, r + N, ... and rank 0 gets every result in the
    items' order; the other ranks get None. A batch is the same in both, so are its results."""
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [result for batch in batches for result in fn(batch)]
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = [fn(batch) for batch in batches[rank::world]]
    if _sharded and batches:
        # A sharded model's forward is a collective: a rank with one batch fewer runs its
        # first batch again (results dropped), so every rank runs as many forwards.
        for _ in range(len(batches[rank::world]), -(-len(batches) // world)):
            fn(batches[rank % len(batches)])
    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    if gathered is None:  # not rank 0
        return None
    return [result for i in range(len(batches)) for result in gathered[i % world][i // world]]
