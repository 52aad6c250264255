"""Conversations -> token ids and labels, and batches padded to a quantile of their lengths."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def batch_length(lengths: list[int], padding_quantile: float, max_length: int) -> int:
    """0 keeps the full max_length; otherwise the given quantile of the batch's lengths."""
    if padding_quantile <= 0:
        return max_length
    return int(math.ceil(np.quantile(lengths, padding_quantile, method="higher")))


def collate_training(
    samples: list[EncodedSample],
    pad_id: int,
    padding_quantile: float,
    max_length: int,
) -> dict[str, torch.Tensor]:
    """Right-pad to the batch length; longer samples lose tokens on the left (keep the answer)."""
    length = batch_length([len(s.input_ids) for s in samples], padding_quantile, max_length)
    input_ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(samples), length), dtype=torch.long)
    for row, s in enumerate(samples):
        ids, labs = s.input_ids[-length:], s.labels[-length:]
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        labels[row, : len(labs)] = torch.tensor(labs, dtype=torch.long)
        attention[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def collate_prompts(prompts: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompts so generation continues every row from its last real token."""
    length = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, p in enumerate(prompts):
        input_ids[row, length - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention[row, length - len(p) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention}


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
