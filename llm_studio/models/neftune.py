"""NEFTune: uniform noise on the input embeddings while training (arXiv:2310.05914)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def add_neftune_noise(model: torch.nn.Module, alpha: float) -> Callable[[], None]:
    """Hook the input embeddings; returns a function that removes the hook. No-op for alpha 0."""
    if alpha <= 0:
        return lambda: None
    embeddings = model.get_input_embeddings()  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module

    def hook(module, inputs, output):
        # Only in training mode: validation, chat and export see clean embeddings.
        if not module.training:
            return output
        seq_len, dim = output.shape[-2], output.shape[-1]
        scale = alpha / (seq_len * dim) ** 0.5
        return output + torch.zeros_like(output).uniform_(-scale, scale)

    handle = embeddings.register_forward_hook(hook)
    return handle.remove
