"""Causal language modeling: learn the answers of (chained) conversations token by token."""

from __future__ import annotations

import functools

import pandas as pd
import torch

from llm_studio.data.augmentation import TrainingSamples
from llm_studio.data.conversations import build_conversations
from llm_studio.data.personalize import personalize
from llm_studio.data.prompt_format import PromptFormat
from llm_studio.data.tokenization import IGNORE_INDEX, collate_training, encode_for_training
from llm_studio.models.backbone import LoadedBackbone, load_backbone, prepare_for_training
from llm_studio.training.checkpointing import save_model
from llm_studio.training.insights import write_train_insights
from llm_studio.training.losses import LOSSES
from llm_studio.training.validation import validate


class CausalLMTask:
    def __init__(self, cfg, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.tokenizer = None
        self.fmt: PromptFormat | None = None

    # --- data ---
    def build_items(self, df: pd.DataFrame, source: str) -> list:
        return build_conversations(df, self.cfg.dataset, source)

    def personalize(self, items: list) -> list:
        ds = self.cfg.dataset
        return personalize(items, ds.chatbot_name, ds.chatbot_author)

    # --- model ---
    def load(self) -> LoadedBackbone:
        backbone = load_backbone(self.cfg, self.device)
        self._set_tokenizer(backbone.tokenizer)
        backbone.model = prepare_for_training(backbone.model, self.cfg)
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
    def collate(self):
        # A partial of a module-level function: picklable for DataLoader worker processes.
        return functools.partial(
            collate_training,
            pad_id=self.tokenizer.pad_token_id,
            padding_quantile=self.cfg.tokenizer.padding_quantile,
            max_length=self.cfg.tokenizer.max_length,
        )

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits
        return LOSSES[self.cfg.training.loss_function](logits, batch["labels"]), {}

    def loss_weight(self, batch: dict) -> int:
        if self.cfg.training.loss_function == "TokenAveragedCrossEntropy":
            return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # the predicted tokens
        return len(batch["input_ids"])  # samples (also the label tasks' rows)

    # --- validation, saving, insights ---
    def validate(self, model, items: list, metric):
        encoded = [self.encode(c) for c in items]
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
