"""Saving the trained model from inside the loop, as the config's checkpoint mode asks."""

from __future__ import annotations

from pathlib import Path

import torch

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
