"""Causal language modeling: learn the answers of (chained) conversations token by token."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import pandas as pd
import torch

from llm_studio.config.base import BaseConfig
from llm_studio.config.sections import ChatDatasetSection
from llm_studio.data.augmentation import TrainingSamples
from llm_studio.data.batching import pack_rows
from llm_studio.data.conversations import build_conversations
from llm_studio.data.personalize import personalize
from llm_studio.data.prompt_format import PromptFormat
from llm_studio.data.tokenization import IGNORE_INDEX, Collate, encode_for_training
from llm_studio.models.backbone import LoadedBackbone, load_backbone, prepare_for_training
from llm_studio.training.checkpointing import save_model
from llm_studio.training.insights import write_train_insights
from llm_studio.training.losses import (
    LOSSES,
    fused_linear_cross_entropy,
    head_inputs,
    kept_token_losses,
    predicting_positions,
    reduce_token_losses,
)
from llm_studio.training.validation import validate

log = logging.getLogger("llm_studio")


class CausalLMTask:
    def __init__(self, cfg: BaseConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        # Set by load(), which the loop calls before any batch, validation or save.
        self.tokenizer: Any = None  # a transformers tokenizer
        self.fmt: PromptFormat = None  # type: ignore[assignment]  # set by load()
        self.packing = False  # padding-free batches (training.sample_packing), once checked
        self.labelled_logits = False  # the model computes logits for chosen positions only
        self.fused_loss: Any = None  # liger's fused linear cross entropy, on one CUDA GPU
        self._validation_cache: tuple[list, list] | None = None

    # --- data ---
    def build_items(self, df: pd.DataFrame, source: str) -> list:
        return build_conversations(df, self.cfg.dataset, source)

    def personalize(self, items: list) -> list:
        ds = self.cfg.dataset
        assert isinstance(ds, ChatDatasetSection)  # the label types override personalize
        return personalize(items, ds.chatbot_name, ds.chatbot_author)

    # --- model ---
    def load(self) -> LoadedBackbone:
        backbone = load_backbone(self.cfg, self.device)
        self._set_tokenizer(backbone.tokenizer)
        backbone.model = prepare_for_training(backbone.model, self.cfg)
        self.labelled_logits = _takes_logits_to_keep(backbone.model)
        if self.labelled_logits and self.cfg.training.loss_function == "TokenAveragedCrossEntropy":
            self.fused_loss = fused_linear_cross_entropy(backbone.model, self.device)
        wanted = getattr(self.cfg.training, "sample_packing", False)  # causal LM only
        self.packing = wanted and packing_is_exact(backbone.model)
        if wanted and not self.packing:
            log.warning(
                "sample_packing: %s lets packed samples see each other; batches are padded",
                self.cfg.llm_backbone,
            )
        return backbone

    def _set_tokenizer(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.fmt = PromptFormat.from_config(self.cfg.dataset, tokenizer.eos_token)

    # --- batches ---
    def encode(self, conversation):
        return encode_for_training(
            conversation,
            tokenizer=self.tokenizer,
            fmt=self.fmt,
            max_length=self.cfg.tokenizer.max_length,
            mask_prompt_labels=getattr(self.cfg.dataset, "mask_prompt_labels", True),
        )

    def training_dataset(self, items: list, seed: int):
        return TrainingSamples(items, self.encode, self.cfg.augmentation, seed)

    @property
    def collate(self) -> Collate:
        """Training batches; validation pads them to the longest row (`padded_to_longest`)."""
        return self.collate_as()

    def collate_as(self, **layout: Any) -> Collate:
        """Batches of the tokenizer settings, in the problem type's layout (see `Collate`)."""
        tok = self.cfg.tokenizer
        return Collate(self.tokenizer.pad_token_id, tok.padding_quantile, tok.max_length, **layout)

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        name = self.cfg.training.loss_function
        if not self.labelled_logits:  # a model without logits_to_keep: every position
            logits = model(**_model_inputs(batch), use_cache=False).logits
            return LOSSES[name](logits, batch["labels"]), {}
        samples = len(batch["input_ids"])
        if self.packing:
            batch = pack_rows(batch)
        sample_ids = batch.get("sample_ids")
        if sample_ids is None:  # one row per sample
            sample_ids = torch.arange(samples, device=batch["labels"].device)[:, None]
            sample_ids = sample_ids.expand_as(batch["labels"])
        keep = predicting_positions(batch["labels"])
        if self.fused_loss is not None:
            return self._fused(model, batch, keep), {}
        logits = model(**_model_inputs(batch), logits_to_keep=keep, use_cache=False).logits
        losses = kept_token_losses(logits, batch["labels"], keep)
        return reduce_token_losses(losses, name, sample_ids[keep], samples), {}

    def _fused(self, model, batch: dict, keep: torch.Tensor) -> torch.Tensor:
        """The token-averaged loss from the head's inputs (liger); scripts/gpu_check.py
        compares it with the plain path on a GPU."""
        head, hidden = head_inputs(model, _model_inputs(batch), keep)
        targets = batch["labels"][:, 1:][keep[:, :-1]]
        bias = None if head.bias is None else head.bias.to(hidden.dtype)
        total = self.fused_loss(head.weight.to(hidden.dtype), hidden, targets, bias)
        return total / max(len(targets), 1)

    def loss_tokens(self, batch: dict) -> int:
        """Loss-bearing (predicted) tokens of a batch, DPO's chosen and rejected together: the
        throughput counts these."""
        return sum(
            int((labels[:, 1:] != IGNORE_INDEX).sum())
            for key, labels in batch.items()
            if key.endswith("labels")
        )

    def loss_weight(self, batch: dict) -> int:
        if self.cfg.training.loss_function == "TokenAveragedCrossEntropy":
            return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # the predicted tokens
        return len(batch["input_ids"])  # samples (also the label tasks' rows)

    # --- validation, saving, insights ---
    def validate(self, model, items: list, metric):
        # Encoded once per run: the items and the tokenizer stay the same between validations.
        if self._validation_cache is None or self._validation_cache[0] is not items:
            self._validation_cache = (items, [self.encode(c) for c in items])
        encoded = self._validation_cache[1]
        return validate(
            model, self.tokenizer, self.fmt, items, encoded, self.cfg, self.device, metric
        )

    def save(self, model, folder, dest=None, adapter: bool = True) -> None:
        save_model(
            model,
            self.tokenizer,
            self.fmt,
            self.cfg,
            folder,
            self.device,
            dest=dest,
            adapter=adapter,
        )

    def write_insights(self, folder, batch: dict) -> None:
        write_train_insights(folder, batch, self.tokenizer)


def _model_inputs(batch: dict) -> dict:
    """Packed rows carry positions (attention stays within each sample); padded rows a mask."""
    if "position_ids" in batch:
        return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def _takes_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


@torch.no_grad()
def packing_is_exact(model) -> bool:
    """True when two samples packed in one row get the logits they get apart: the model keeps
    attention inside each sample from position_ids (remote code may not)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        first, second = torch.arange(3, 9, device=device), torch.arange(20, 25, device=device)
        apart = [model(input_ids=ids[None], use_cache=False).logits[0] for ids in (first, second)]
        packed = model(
            input_ids=torch.cat([first, second])[None],
            position_ids=torch.cat([torch.arange(6), torch.arange(5)]).to(device)[None],
            use_cache=False,
        ).logits[0]
        return torch.allclose(packed, torch.cat(apart).to(packed.dtype), atol=1e-3, rtol=1e-3)
    except (TypeError, ValueError, RuntimeError) as error:
        log.info("sample_packing: the packed check failed (%s)", error)
        return False
    finally:
        model.train(was_training)
