"""Preference pairs for DPO: rows -> (chosen, rejected) conversations, encoded and batched.

The chosen conversation is exactly what causal LM training builds from a row (parent chains
included). The rejected one shares its system text and earlier turns and differs only in the
last turn: the rejected answer, after the rejected prompt when `rejected_prompt_column` is set
(else the same prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from llm_studio.data.augmentation import TrainingSamples
from llm_studio.data.conversations import build_conversations
from llm_studio.data.prompt_format import Conversation
from llm_studio.data.readers import DataError
from llm_studio.data.tokenization import IGNORE_INDEX, EncodedSample


@dataclass(frozen=True)
class PreferencePair:
    chosen: Conversation
    rejected: Conversation

    def in_context(self, chosen: Conversation) -> PreferencePair:
        """This pair's last turns after `chosen`'s context (an augmented chosen conversation
        that ends with this pair's chosen turn): both sides keep sharing the earlier turns."""
        return PreferencePair(chosen, _replace_last_turn(chosen, self.rejected))


def _replace_last_turn(context: Conversation, last: Conversation) -> Conversation:
    return Conversation(
        context.system,
        context.prompts[:-1] + last.prompts[-1:],
        context.answers[:-1] + last.answers[-1:],
    )


def _cells(df: pd.DataFrame, column: str) -> list[str]:
    return ["" if pd.isna(v) else str(v) for v in df[column].tolist()]


def check_preference_columns(df: pd.DataFrame, dataset_cfg, source: str) -> None:
    needed = {"dataset.rejected_answer_column": dataset_cfg.rejected_answer_column}
    if dataset_cfg.rejected_prompt_column:
        needed["dataset.rejected_prompt_column"] = dataset_cfg.rejected_prompt_column
    for key, column in needed.items():
        if column not in df.columns:
            raise DataError(
                f"{source}: column {column!r} ({key}) not found; "
                f"the file has columns {list(df.columns)}"
            )


def build_preference_pairs(df: pd.DataFrame, dataset_cfg, source: str) -> list[PreferencePair]:
    """One pair per row; earlier turns of a chain come from the chosen answers of its parents."""
    check_preference_columns(df, dataset_cfg, source)
    chosen = build_conversations(df, dataset_cfg, source)
    rejected_answers = _cells(df, dataset_cfg.rejected_answer_column)
    rejected_prompts = (
        _cells(df, dataset_cfg.rejected_prompt_column)
        if dataset_cfg.rejected_prompt_column
        else [c.prompts[-1] for c in chosen]
    )
    return [
        PreferencePair(c, _replace_last_turn(c, Conversation(None, (prompt,), (answer,))))
        for c, prompt, answer in zip(chosen, rejected_prompts, rejected_answers, strict=True)
    ]


# --- encoding and batches ---


# The sides of a pair, as `Collate(sides=...)` batches them: `chosen_*` and `rejected_*` keys.
PAIR_SIDES = ("chosen", "rejected")


@dataclass
class EncodedPair:
    chosen: EncodedSample
    rejected: EncodedSample


def label_last_answer_only(sample: EncodedSample) -> EncodedSample:
    """Keep the labels of the last run of labelled tokens only.

    With prompt labels masked (the default) that run is the final answer: the answers of
    earlier turns are context shared by both sides of a pair, so they are not scored. With
    `mask_prompt_labels` off every token is labelled, and all of them stay so.
    """
    labels = list(sample.labels)
    end = len(labels)
    while end > 0 and labels[end - 1] == IGNORE_INDEX:
        end -= 1
    start = end
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    labels[:start] = [IGNORE_INDEX] * start
    return EncodedSample(sample.input_ids, labels)


def side(batch: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """One side of a pair batch with plain keys (input_ids, attention_mask, labels)."""
    prefix = f"{name}_"
    return {k[len(prefix) :]: v for k, v in batch.items() if k.startswith(prefix)}


def stack_sides(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Chosen rows, then rejected rows, as one plain batch."""
    chosen, rejected = side(batch, "chosen"), side(batch, "rejected")
    return {k: torch.cat([chosen[k], rejected[k]]) for k in chosen}


class PreferenceSamples(TrainingSamples):
    """Training pairs, encoded per item. The chain augmentations are drawn on the chosen
    conversation exactly as for causal LM, and the rejected side follows the same context."""

    def __init__(self, pairs: list[PreferencePair], encode, augmentation_cfg, seed: int):
        super().__init__(pairs, encode, augmentation_cfg, seed)  # type: ignore[arg-type]  # items are pairs here
        self._chosen = (
            TrainingSamples([p.chosen for p in pairs], _not_encoded, augmentation_cfg, seed)
            if self.augments
            else None
        )

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if self._chosen is not None:
            self._chosen.set_epoch(epoch)

    def conversation(self, index: int) -> PreferencePair:  # type: ignore[override]  # pairs, not conversations
        pair: PreferencePair = self.conversations[index]  # type: ignore[assignment]  # see __init__
        if self._chosen is None:
            return pair
        return pair.in_context(self._chosen.conversation(index))


def _not_encoded(conversation: Conversation) -> EncodedSample:
    raise AssertionError("only used for the augmented chosen conversations")
