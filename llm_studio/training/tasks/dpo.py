"""DPO modeling: learn from pairs of a chosen and a rejected answer to the same context.

Built on the causal LM task: the chosen conversation is a causal LM conversation, so loading,
generation-based validation (metrics on the chosen answer), saving and insights are shared.
What DPO adds: pairs as items, the reference model, and the preference losses.

The reference model is the policy's starting point. With LoRA it is the backbone itself with
the adapter switched off (no second copy in memory); without LoRA it is a frozen copy made
when the model is loaded. Its log-probs are computed without gradients, in eval mode (no
dropout, no NEFTune noise), so they are a fixed target.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from llm_studio.config.dpo import DPOConfig
from llm_studio.data.personalize import personalize
from llm_studio.data.preferences import (
    PAIR_SIDES,
    EncodedPair,
    PreferencePair,
    PreferenceSamples,
    build_preference_pairs,
    label_last_answer_only,
    side,
    stack_sides,
)
from llm_studio.data.tokenization import IGNORE_INDEX, Collate
from llm_studio.models.backbone import LoadedBackbone
from llm_studio.training.distributed import map_batches
from llm_studio.training.dpo_losses import (
    PREFERENCE_LOSSES,
    REFERENCE_FREE,
    AnswerLogps,
    PreferenceLoss,
)
from llm_studio.training.losses import per_sample_loss
from llm_studio.training.tasks.base import ValidationOutcome
from llm_studio.training.tasks.causal_lm import CausalLMTask


def answer_logps(model, batch: dict[str, torch.Tensor]) -> AnswerLogps:
    """Summed log-probs of each side's labelled tokens: chosen and rejected in one forward."""
    both = stack_sides(batch)
    logits = model(
        input_ids=both["input_ids"], attention_mask=both["attention_mask"], use_cache=False
    ).logits
    tokens = (both["labels"][:, 1:] != IGNORE_INDEX).sum(dim=1)
    sums = -per_sample_loss(logits, both["labels"]) * tokens  # mean NLL * count = -sum log p
    n = batch["chosen_input_ids"].shape[0]
    return AnswerLogps(sums[:n], sums[n:], tokens[:n], tokens[n:])


@contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class DPOTask(CausalLMTask):
    cfg: DPOConfig

    def __init__(self, cfg: DPOConfig, device: torch.device):
        super().__init__(cfg, device)
        self.reference: torch.nn.Module | None = None  # the frozen copy, when LoRA is off

    def __getstate__(self) -> dict:
        # DataLoader workers started by pickling get the encoder, never the reference model.
        return {**self.__dict__, "reference": None}

    # --- data ---
    def build_items(self, df, source: str) -> list[PreferencePair]:
        return build_preference_pairs(df, self.cfg.dataset, source)

    def personalize(self, items: list[PreferencePair]) -> list[PreferencePair]:
        """Names and authors replaced on both sides. The identity turns personalize adds for
        causal LM have no rejected answer, so DPO does not train on them."""
        ds = self.cfg.dataset

        def rename(conversations):
            return personalize(conversations, ds.chatbot_name, ds.chatbot_author)[: len(items)]

        chosen = rename([p.chosen for p in items])
        rejected = rename([p.rejected for p in items])
        return [PreferencePair(c, r) for c, r in zip(chosen, rejected, strict=True)]

    # --- model ---
    @property
    def uses_reference(self) -> bool:
        return self.cfg.training.loss_function not in REFERENCE_FREE

    def load(self) -> LoadedBackbone:
        backbone = super().load()
        if self.uses_reference and not self.cfg.training.lora:
            self.reference = copy.deepcopy(backbone.model).eval().requires_grad_(False)
        return backbone

    @torch.no_grad()
    def reference_logps(self, model, batch: dict) -> AnswerLogps:
        if self.reference is not None:
            return answer_logps(self.reference, batch)
        with _eval_mode(model), model.disable_adapter():
            return answer_logps(model, batch)

    # --- batches ---
    def encode_pair(self, pair: PreferencePair) -> EncodedPair:
        return EncodedPair(
            label_last_answer_only(self.encode(pair.chosen)),
            label_last_answer_only(self.encode(pair.rejected)),
        )

    def training_dataset(self, items: list, seed: int):
        return PreferenceSamples(items, self.encode_pair, self.cfg.augmentation, seed)

    @property
    def collate(self) -> Collate:
        return self.collate_as(sides=PAIR_SIDES)

    def preference_loss(self, model, batch: dict) -> PreferenceLoss:
        tr = self.cfg.training
        policy = answer_logps(model, batch)
        reference = self.reference_logps(model, batch) if self.uses_reference else None
        return PREFERENCE_LOSSES[tr.loss_function](policy, reference, tr.beta, tr.simpo_gamma)

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        result = self.preference_loss(model, batch)
        return result.loss, result.stats()

    def loss_weight(self, batch: dict) -> int:
        return len(batch["chosen_input_ids"])  # the loss is a mean over pairs

    # --- validation, insights ---
    def validate(self, model, items: list, metric) -> DPOValidationResult | None:
        """The metric on the chosen answers (generation, as causal LM), and the preference
        loss and reward charts on the pairs. Validation items that are not pairs (mt-bench
        questions) get the metric only, with the causal loss. Sharded over the ranks in DDP:
        rank 0 gets the result, the others None."""
        pairs = [p for p in items if isinstance(p, PreferencePair)]
        conversations = [p.chosen if isinstance(p, PreferencePair) else p for p in items]
        causal = super().validate(model, conversations, metric)
        if not pairs:
            return DPOValidationResult(causal, causal.loss, {}) if causal else None
        whole = self._validation_pairs(model, pairs)
        if whole is None:
            return None
        return DPOValidationResult(causal, float(np.mean(whole.losses.tolist())), whole.stats())

    @torch.no_grad()
    def _validation_pairs(self, model, pairs: list[PreferencePair]) -> PreferenceLoss | None:
        cfg = self.cfg
        batch_size = cfg.prediction.batch_size_inference or cfg.training.batch_size

        def loss_and_rewards(chunk: list[EncodedPair]) -> list[list[float]]:
            batch = self.collate.padded_to_longest()(chunk)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            result = self.preference_loss(model, batch)
            per_pair = [result.losses, result.chosen_rewards, result.rejected_rewards]
            return torch.stack([t.float() for t in per_pair], dim=1).cpu().tolist()

        with _eval_mode(model):
            rows = map_batches(loss_and_rewards, [self.encode_pair(p) for p in pairs], batch_size)
        if rows is None:
            return None
        return PreferenceLoss(*torch.tensor(rows, dtype=torch.float32).unbind(dim=1))

    def write_insights(self, folder, batch: dict) -> None:
        """The chosen sequences, as causal LM shows its batches."""
        super().write_insights(folder, side(batch, "chosen"))


@dataclass
class DPOValidationResult:
    """The causal result on the chosen answers (metric, predictions) with the DPO loss."""

    causal: ValidationOutcome
    loss: float
    charts: dict[str, float] = field(default_factory=dict)

    @property
    def metric_value(self) -> float:
        return self.causal.metric_value

    def write(self, folder, metric) -> None:
        self.causal.write(folder, metric)
