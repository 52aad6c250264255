"""Saving the trained model from inside the loop, and when to, as the config's checkpoint mode
asks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from llm_studio.config.sections import SAVE_CHECKPOINT
from llm_studio.export.checkpoint import save_checkpoint
from llm_studio.models.backbone import attention_implementation, build_model


def save_model(
    model, tokenizer, fmt, cfg, folder, device, dest: Path | None = None, adapter: bool = True
) -> None:
    """`checkpoint/` (merged HF folder) and, with LoRA, `adapter_model/` next to it."""

    def reload_base() -> torch.nn.Module:
        # A quantized backbone is loaded again in float to take the merged adapter weights.
        cpu = torch.device("cpu")
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
        attn = attention_implementation(cfg, device) if device.type == "cuda" else "sdpa"
        return build_model(cfg, dtype, attn, len(tokenizer), quantize=False, device=cpu)

    save_checkpoint(
        model,
        tokenizer,
        fmt,
        dest or folder.checkpoint_dir,
        adapter_dest=folder.adapter_dir if adapter else None,
        reload_base=reload_base,
    )


@dataclass(frozen=True)
class CheckpointPolicy:
    """When the recipe writes `checkpoint/`, from training.save_checkpoint:

    - last: at the end of the run;
    - best: after each validation that improves the metric (at the end, if none did);
    - each_evaluation_epoch: after every validation, plus a copy of the model alone in
      `checkpoint_epoch_<epoch>/`;
    - disable: never, so chat and export have no model.

    A stopped run saves what it has (unless disable): it may never be resumed.
    """

    mode: str

    def __post_init__(self) -> None:
        if self.mode not in SAVE_CHECKPOINT:
            raise ValueError(f"training.save_checkpoint: unknown mode {self.mode!r}")

    @property
    def disabled(self) -> bool:
        return self.mode == "disable"

    def saves_after_validation(self, improved: bool) -> bool:
        return self.mode == "each_evaluation_epoch" or (self.mode == "best" and improved)

    @property
    def keeps_each_validation(self) -> bool:
        """A copy per validation, in `checkpoint_epoch_<epoch>/`."""
        return self.mode == "each_evaluation_epoch"

    def saves_at_end(self, stopped: bool, has_checkpoint: Callable[[], bool]) -> bool:
        """`has_checkpoint()` (asked only for best) says whether a validation saved one."""
        if self.disabled:
            return False
        if self.mode == "last" or stopped:
            return True
        return self.mode == "best" and not has_checkpoint()
