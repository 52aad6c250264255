"""Training state for resuming: trainable weights, optimizer, scheduler, RNG states and the
position in the data, written atomically into `<experiment>/resume/`."""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from llm_studio.atomic import replace_dir
from llm_studio.config.settings import ConfigError

DEEPSPEED_DIR = "deepspeed"  # DeepSpeed's checkpoint of its ZeRO partitions, in the resume state


@dataclass
class TrainingPosition:
    step: int = 0  # batches done in total
    epoch_index: int = 0  # the epoch the next batch belongs to
    batch_in_epoch: int = 0  # batches of that epoch already done
    next_eval: float = 0.0
    best_value: float | None = None
    world_size: int = 1  # processes of the run (DDP): a step is a batch of all of them
    engine: str = ""  # data_parallel_engine of a multi-process run: its optimizer state differs


def resume_command(world_size: int) -> str:
    if world_size > 1:
        return f"bash distributed_train.sh {world_size} -Y cfg.yaml --resume"
    return "python train.py -Y cfg.yaml --resume"


def random_state(generators: dict[str, torch.Generator]) -> dict:
    """This process's random state: the global generators and the loop's own."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "generators": {k: g.get_state() for k, g in generators.items()},
    }


def save_training_state(
    dest: Path,
    weights: dict[str, torch.Tensor],
    optimizer_state: dict | Path,
    scheduler,
    position: TrainingPosition,
    rngs: list[dict],
) -> None:
    """`weights`: the trainable ones, whole (`Distributed.training_state`); `optimizer_state`:
    its state dict, or (DeepSpeed) the folder its engine saved the ZeRO partitions into, which
    moves into `dest` as `deepspeed/`; `rngs`: the `random_state` of every process of the run,
    in rank order."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    if isinstance(optimizer_state, Path):
        optimizer_state.rename(tmp / DEEPSPEED_DIR)  # the same parent: no copy
    save_file(weights, tmp / "trainable.safetensors")
    torch.save(
        {
            "optimizer": DEEPSPEED_DIR if isinstance(optimizer_state, Path) else optimizer_state,
            "scheduler": scheduler.state_dict(),
            "rng": rngs,
        },
        tmp / "state.pt",
    )
    (tmp / "position.json").write_text(json.dumps(asdict(position)))
    replace_dir(tmp, dest)


def load_training_state(
    src: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    generators: dict[str, torch.Generator],
    ddp,
) -> TrainingPosition:
    """`ddp`: this process's `Distributed`; it puts the weights into its shards under FSDP."""
    if not (src / "position.json").is_file():
        raise ConfigError(
            f"--resume: {src.parent} has no saved training state yet "
            "(it is written at each validation and when a run is stopped)"
        )
    position = TrainingPosition(**json.loads((src / "position.json").read_text()))
    if position.world_size != ddp.world_size:
        raise ConfigError(
            f"--resume: the saved state is of a run of {position.world_size} process(es), "
            f"this one has {ddp.world_size}; resume with {resume_command(position.world_size)}"
        )
    engine = ddp.state_engine
    if position.engine != engine:
        raise ConfigError(
            f"--resume: the saved state is of a run with data_parallel_engine "
            f"{position.engine or 'ddp'}, this one uses {engine or 'ddp'}; resume with the same"
        )
    weights = load_file(src / "trainable.safetensors")
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise ConfigError(f"--resume: the saved state does not fit this model ({missing[0]})")
    state = torch.load(src / "state.pt", map_location="cpu", weights_only=False)
    optimizer_state = state["optimizer"]
    if optimizer_state == DEEPSPEED_DIR:
        optimizer_state = src / DEEPSPEED_DIR
    ddp.load_training_state(model, optimizer, weights, optimizer_state)
    scheduler.load_state_dict(state["scheduler"])
    rank = ddp.rank
    rng = state["rng"][rank] if isinstance(state["rng"], list) else state["rng"]  # list: per rank
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    for name, generator in generators.items():
        generator.set_state(rng["generators"][name])
    return position
