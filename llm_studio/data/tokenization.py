"""Conversations -> token ids and labels, and batches padded to a quantile of their lengths."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from llm_studio.data.prompt_format import Conversation, PromptFormat

IGNORE_INDEX = -100


@dataclass
class EncodedSample:
    input_ids: list[int]
    labels: list[int]


def encode_for_training(
    conv: Conversation,
    tokenizer,
    fmt: PromptFormat,
    max_length: int,
    mask_prompt_labels: bool,
) -> EncodedSample:
    """Tokenize the rendered text once (exactly what the chat template yields) and label answers.

    Too long a sample loses tokens on the left so the final answer is kept; an answer longer
    than half of `max_length` is cut on the right to leave room for its prompt.
    """
    segments = fmt.segments(conv)
    text, answer_spans, pos = "", [], 0
    for seg in segments:
        if seg.is_answer:
            answer_spans.append((pos, pos + len(seg.text)))
        text += seg.text
        pos += len(seg.text)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    starts = [start for start, _ in enc["offset_mapping"]]
    in_answer = [any(a <= s < b for a, b in answer_spans) for s in starts]
    labels = [
        i if (ans or not mask_prompt_labels) else IGNORE_INDEX
        for i, ans in zip(ids, in_answer, strict=True)
    ]

    if len(ids) > max_length:
        last_start = answer_spans[-1][0] if answer_spans else len(text)
        prompt_len = next((k for k, s in enumerate(starts) if s >= last_start), len(ids))
        answer_len = len(ids) - prompt_len
        answer_keep = min(answer_len, max(max_length - prompt_len, max_length // 2))
        prompt_keep = max_length - answer_keep
        window = slice(prompt_len - prompt_keep, prompt_len + answer_keep)
        ids, labels = ids[window], labels[window]
    return EncodedSample(ids, labels)


def encode_prompt(conv: Conversation, tokenizer, fmt: PromptFormat, max_length: int) -> list[int]:
    """The generation prompt for the conversation's last turn, cut on the left to max_length."""
    text = fmt.render(conv, with_last_answer=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(ids[-max_length:])


# The padding_quantile at which no row of a batch loses tokens (`Collate.padded_to_longest`).
PAD_TO_LONGEST = 1.0

LabelLayout = Literal["aligned", "decoder", "none"]


def batch_length(lengths: list[int], padding_quantile: float, max_length: int) -> int:
    """0 keeps the full max_length; otherwise the given quantile of the batch's lengths."""
    if padding_quantile <= 0:
        return max_length
    return int(math.ceil(np.quantile(lengths, padding_quantile, method="higher")))


def pad_rows(
    rows: Sequence[Sequence[int]], length: int, fill: int, *, left: bool = False
) -> torch.Tensor:
    """Rows of ids in a (rows, length) tensor padded with `fill` on the right (or the left);
    a longer row keeps its last `length` ids."""
    out = torch.full((len(rows), length), fill, dtype=torch.long)
    for i, row in enumerate(rows):
        kept = row[max(len(row) - length, 0) :]
        if not kept:
            continue
        ids = torch.tensor(kept, dtype=torch.long)
        if left:
            out[i, length - len(kept) :] = ids
        else:
            out[i, : len(kept)] = ids
    return out


def attention_mask(
    rows: Sequence[Sequence[int]], length: int, *, left: bool = False
) -> torch.Tensor:
    """1 where `pad_rows(rows, length, ..., left=left)` holds a real id, 0 on the padding."""
    kept = torch.tensor([min(len(row), length) for row in rows], dtype=torch.long)[:, None]
    positions = torch.arange(length)
    real = positions >= length - kept if left else positions < kept
    return real.long()


@dataclass(frozen=True)
class Collate:
    """The one batch builder of every task. Each sample's `input_ids` become right-padded
    `input_ids` and `attention_mask`, as long as `batch_length` says (a longer row loses
    tokens on the left, so the answer stays). The layout says what goes with them:

    - `labels`: "aligned" cuts and pads (IGNORE_INDEX) the sample's `labels` exactly as its
      input ids (causal LM, DPO); "decoder" right-pads them to the longest answer of the batch,
      uncut (seq2seq's decoder targets); "none" leaves them out (classification).
    - `targets`: a float32 `targets` tensor of each sample's `target` (classification).
    - `sides`: each sample holds these samples (DPO's chosen and rejected); all of them are
      batched at one length, so they can go through the model together, and come back under
      `<side>_` keys.

    A module-level frozen dataclass: picklable for DataLoader worker processes.
    """

    pad_id: int
    padding_quantile: float
    max_length: int
    labels: LabelLayout = "aligned"
    targets: bool = False
    sides: tuple[str, ...] = ()

    def padded_to_longest(self) -> Collate:
        """The same batches with no row cut: validation's, so that a row's loss and prediction
        do not depend on the rows it is batched with."""
        return replace(self, padding_quantile=PAD_TO_LONGEST)

    def __call__(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        if not self.sides:
            return self._rows(samples)
        n = len(samples)
        every = self._rows([getattr(s, side) for side in self.sides for s in samples])
        batch = {}
        for k, side in enumerate(self.sides):
            batch.update({f"{side}_{key}": v[k * n : (k + 1) * n] for key, v in every.items()})
        return batch

    def _rows(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        rows = [s.input_ids for s in samples]
        length = batch_length([len(row) for row in rows], self.padding_quantile, self.max_length)
        batch = {
            "input_ids": pad_rows(rows, length, self.pad_id),
            "attention_mask": attention_mask(rows, length),
        }
        if self.labels == "aligned":
            batch["labels"] = pad_rows([s.labels for s in samples], length, IGNORE_INDEX)
        elif self.labels == "decoder":
            # Not `decoder_input_ids`: the loop's token masking (keys ending in input_ids)
            # leaves the labels alone.
            answers = [s.labels for s in samples]
            batch["labels"] = pad_rows(answers, max(1, max(map(len, answers))), IGNORE_INDEX)
        if self.targets:
            batch["targets"] = torch.tensor([s.target for s in samples], dtype=torch.float32)
        return batch


def collate_training(
    samples: list[EncodedSample],
    pad_id: int,
    padding_quantile: float,
    max_length: int,
) -> dict[str, torch.Tensor]:
    """A causal LM batch: input ids, attention mask and aligned labels (`Collate`)."""
    return Collate(pad_id, padding_quantile, max_length)(samples)


def collate_prompts(prompts: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompts so generation continues every row from its last real token."""
    length = max(len(p) for p in prompts)
    return {
        "input_ids": pad_rows(prompts, length, pad_id, left=True),
        "attention_mask": attention_mask(prompts, length, left=True),
    }


def mask_tokens(
    batch: dict[str, torch.Tensor], probability: float, mask_id: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Token-mask augmentation: replace real input tokens (never the labels) by the mask token.

    Applies to every `*input_ids` tensor of the batch (DPO batches carry chosen and rejected).
    """
    if probability <= 0:
        return batch
    out = dict(batch)
    for key in batch:
        if not key.endswith("input_ids"):
            continue
        ids = batch[key]
        attention = batch[key.replace("input_ids", "attention_mask")]
        noise = torch.rand(ids.shape, generator=generator)
        out[key] = ids.masked_fill((noise < probability) & attention.bool(), mask_id)
    return out
