"""A linear head on a causal LM's last real token: the model of the label problem types.

The backbone (plain, or wrapped by PEFT) runs without its LM head; the hidden state of each
row's last non-padding token (right padding: position `attention_mask.sum() - 1`) goes through
`head`, giving one output per class (classification) or per target (regression).

The head is saved next to the merged backbone as `classification_head.safetensors` (`weight`,
`bias`, float32) and `classification_head.json` (how to use the outputs), for both problem
types; docs/classification.md shows how to predict with them using plain transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from llm_studio.atomic import write_atomic, write_json_atomic

HEAD_WEIGHTS = "classification_head.safetensors"
HEAD_INFO = "classification_head.json"


def transformer_body(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack of a causal LM (e.g. `LlamaModel`), LoRA layers included when wrapped."""
    if hasattr(model, "get_base_model"):  # PEFT: the adapters live inside the base model
        model = model.get_base_model()  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
    return model.base_model  # type: ignore[return-value]  # transformers API; torch types Module attributes as Tensor | Module


def hidden_size_of(model: torch.nn.Module) -> int:
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
    return int(config.hidden_size)  # type: ignore[union-attr]  # transformers API; torch types Module attributes as Tensor | Module


def last_token_states(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, seq, dim) -> (batch, dim): each row's last attended position (right padding)."""
    last = (attention_mask.long().sum(dim=1) - 1).clamp(min=0)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class LabelModel(torch.nn.Module):
    """Backbone + head; `forward` returns (batch, num_outputs) raw outputs (logits or values).

    Exposes what the training loop uses of a transformers model: `get_input_embeddings` (for
    NEFTune), parameters, train/eval.
    """

    def __init__(self, backbone: torch.nn.Module, num_outputs: int):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(hidden_size_of(backbone), num_outputs, dtype=torch.float32)
        torch.nn.init.normal_(self.head.weight, std=0.02)
        torch.nn.init.zeros_(self.head.bias)
        device = backbone.get_input_embeddings().weight.device  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
        self.head.to(device)

    @property
    def num_outputs(self) -> int:
        return self.head.out_features

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.backbone.get_input_embeddings()  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> torch.Tensor:
        out = transformer_body(self.backbone)(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        )
        pooled = last_token_states(out.last_hidden_state, attention_mask)
        # The head stays float32 whatever the backbone's dtype.
        return self.head(pooled.to(self.head.weight.dtype))


def save_head(head: torch.nn.Linear, info: dict, dest: Path) -> None:
    """Write the head's weights and description into `dest` (each file replaced atomically)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tensors = {
        "weight": head.weight.detach().float().cpu().contiguous(),
        "bias": head.bias.detach().float().cpu().contiguous(),
    }
    write_atomic(dest / HEAD_WEIGHTS, lambda tmp: save_file(tensors, tmp))
    write_json_atomic(dest / HEAD_INFO, info)


def read_head(folder: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The saved head's tensors and description, or None when `folder` has none."""
    folder = Path(folder)
    if not (folder / HEAD_WEIGHTS).is_file() or not (folder / HEAD_INFO).is_file():
        return None
    return load_file(folder / HEAD_WEIGHTS), json.loads((folder / HEAD_INFO).read_text())
