"""DeepSpeed ZeRO's configuration from the experiment's settings, and the environment its CPU
backend needs before DeepSpeed is first imported (`Distributed._zero` uses both)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch


def prepare_cpu_backend() -> None:
    """Call before the first `import deepspeed` of a run the config keeps on the CPU."""
    # DeepSpeed picks its accelerator once, and would take a GPU that happens to exist.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    # Its CPU backend compiles a small C++ op (shared-memory all-reduce) on first use, a minute
    # on few cores; cached next to the environment's torch it is built once.
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(_extensions_dir()))


def zero_config(cfg: Any, stage: int, dtype: torch.dtype) -> dict[str, Any]:
    """The engine's config: our batch, accumulation and clipping; `dtype` of the trained
    weights. The optimizer and scheduler stay the loop's, so the learning rate is ours."""
    tr = cfg.training
    return {
        "train_micro_batch_size_per_gpu": tr.batch_size,
        "gradient_accumulation_steps": tr.grad_accumulation,
        "gradient_clipping": tr.gradient_clip,  # 0: off, as in the loop
        "zero_optimization": {"stage": stage},
        # ZeRO steps any torch optimizer on its flat partitions; it only vouches for Adam(W).
        "zero_allow_untested_optimizer": True,
        # Half-precision weights get fp32 master weights in the optimizer's partitions.
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def _extensions_dir() -> Path:
    """Where torch builds DeepSpeed's C++ ops: inside this Python environment (the ops are
    built against its torch), or torch's default when the environment is not writable."""
    inside = Path(sys.prefix) / "torch_extensions"
    if os.access(sys.prefix, os.W_OK):
        return inside
    return Path.home() / ".cache" / "torch_extensions"
