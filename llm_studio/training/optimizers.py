"""Optimizers and learning-rate schedules, looked up by the names the config uses."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from llm_studio.config import registries
from llm_studio.config.sections import TrainingSection


def _adamw_8bit(params, lr: float, weight_decay: float):
    import bitsandbytes as bnb

    return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)


def _on_cuda(groups) -> bool:
    return all(p.is_cuda for group in groups for p in group["params"])


def _adam(cls):
    """Adam(W), the fused kernel on CUDA (one launch per step instead of one per tensor)."""

    def build(groups, lr: float, weight_decay: float):
        fused = True if _on_cuda(groups) else None
        return cls(groups, lr=lr, weight_decay=weight_decay, fused=fused)

    return build


OPTIMIZERS: dict[str, Callable] = registries.OPTIMIZERS.implement(
    {
        "Adadelta": lambda p, lr, wd: torch.optim.Adadelta(p, lr=lr, weight_decay=wd),
        "Adam": _adam(torch.optim.Adam),
        "AdamW": _adam(torch.optim.AdamW),
        "AdamW8bit": _adamw_8bit,
        "RMSprop": lambda p, lr, wd: torch.optim.RMSprop(p, lr=lr, weight_decay=wd),
        "SGD": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, weight_decay=wd, momentum=0.9),
    }
)


def decays(name: str, param: torch.nn.Parameter) -> bool:
    """Weight decay applies to weight matrices, not to norms, biases or other vectors."""
    return param.ndim >= 2 and "norm" not in name.lower()


def param_groups(model: torch.nn.Module, training_cfg: TrainingSection) -> list[dict]:
    """Trainable parameters; names matching differential_learning_rate_layers get their own
    rate; norms and biases get no weight decay."""
    patterns = [p for p in training_cfg.differential_learning_rate_layers if p]
    rates = (training_cfg.learning_rate, training_cfg.differential_learning_rate)
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (any(p in name for p in patterns), decays(name, param))
        groups.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            "lr": rates[differential],
            "weight_decay": training_cfg.weight_decay if decay else 0.0,
        }
        for (differential, decay), params in sorted(groups.items())
    ]


def build_optimizer(model: torch.nn.Module, training_cfg: TrainingSection) -> torch.optim.Optimizer:
    groups = param_groups(model, training_cfg)
    if not groups:
        raise ValueError("no trainable parameters: check lora / freeze_layers settings")
    factory = OPTIMIZERS[training_cfg.optimizer]
    return factory(groups, training_cfg.learning_rate, training_cfg.weight_decay)


def _constant(progress: float) -> float:
    return 1.0


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _linear(progress: float) -> float:
    return 1.0 - progress


SCHEDULES: dict[str, Callable[[float], float]] = registries.SCHEDULES.implement(
    {"Constant": _constant, "Cosine": _cosine, "Linear": _linear}
)


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over `warmup_steps`, then the named decay over the remaining steps."""
    decay = SCHEDULES[schedule]

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        span = max(1, total_steps - warmup_steps)
        return decay(min(1.0, (step - warmup_steps) / span))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
