"""Sequence to sequence modeling: an encoder reads the conversation, a decoder writes the answer.

The data (prompt and answer columns, parent chains, personalization, augmentations) and the
saving are the causal LM task's; what differs is the split of each sample in two sequences:

- encoder input: the conversation rendered up to the last answer separator (exactly what the
  saved chat template yields with `add_generation_prompt`), cut on the left to `max_length`;
- decoder labels: the last answer, plus EOS with `add_eos_token_to_answer`.

The decoder's logits are already aligned with its labels (the model shifts the labels right to
make the decoder inputs), so the losses here do not shift by one as the causal ones do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from llm_studio.config.registries import TEXT_LOSSES
from llm_studio.config.sections import PredictionSection
from llm_studio.data.tokenization import (
    IGNORE_INDEX,
    Collate,
    attention_mask,
    encode_prompt,
    pad_rows,
)
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.metrics.text import Metric
from llm_studio.models.generation import cut_at_stop, generating, generation_kwargs
from llm_studio.training.distributed import map_batches
from llm_studio.training.losses import aligned_token_losses
from llm_studio.training.tasks.causal_lm import CausalLMTask
from llm_studio.training.validation import ValidationResult, scored


@dataclass
class Seq2SeqSample:
    input_ids: list[int]  # encoder input
    labels: list[int]  # decoder target


# --- losses on aligned logits ---


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    losses, mask = aligned_token_losses(logits, labels)
    return (losses * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def token_averaged_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Every answer token of the batch weighs the same."""
    losses, mask = aligned_token_losses(logits, labels)
    return (losses * mask).sum() / mask.sum().clamp(min=1)


def sample_averaged_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each answer's mean token loss, then the mean over answers."""
    return per_sample_loss(logits, labels).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = TEXT_LOSSES.implement(
    {
        "TokenAveragedCrossEntropy": token_averaged_cross_entropy,
        "SampleAveragedCrossEntropy": sample_averaged_cross_entropy,
    }
)


# --- encoding and batches ---


def encode_seq2seq(conv, tokenizer, fmt, max_length: int) -> Seq2SeqSample:
    """The encoder input (cut on the left) and the answer labels (cut on the right)."""
    encoder_ids = encode_prompt(conv, tokenizer, fmt, max_length)
    answer_ids = list(tokenizer(conv.answers[-1], add_special_tokens=False)["input_ids"])
    if fmt.eos_after_answer:
        answer_ids.append(tokenizer.eos_token_id)
    return Seq2SeqSample(encoder_ids, answer_ids[:max_length])


def decoder_inputs(model, labels: torch.Tensor) -> torch.Tensor:
    """The labels shifted right behind the decoder start token, as the model itself does it."""
    prepare = getattr(model, "prepare_decoder_input_ids_from_labels", None)
    if prepare is not None:
        return prepare(labels=labels)
    config = model.config
    start = config.decoder_start_token_id
    pad = config.pad_token_id
    shifted = labels.new_full(labels.shape, pad)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad)


def decoder_logits(model, batch: dict) -> torch.Tensor:
    return model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=decoder_inputs(model, batch["labels"]),
        use_cache=False,
    ).logits


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    prompts: list[list[int]],
    prediction_cfg: PredictionSection,
    device: torch.device,
) -> list[str]:
    """Answers for encoder inputs, batched and right-padded, with the KV cache on.

    An encoder-decoder's output is the decoder sequence only: its start token, then the answer.
    """
    length = max(1, max(len(p) for p in prompts))
    input_ids = pad_rows(prompts, length, tokenizer.pad_token_id)
    attention = attention_mask(prompts, length)
    with generating(model) as synced_gpus:
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            **generation_kwargs(prediction_cfg, tokenizer),
            synced_gpus=synced_gpus,
        )
    texts = tokenizer.batch_decode(output[:, 1:], skip_special_tokens=True)
    return [cut_at_stop(t, prediction_cfg).strip() for t in texts]


def write_seq2seq_insights(folder: ExperimentFolder, batch: dict, tokenizer) -> None:
    """The first batch as the model sees it, in the causal insights' shape: per sample, the
    encoder input (`masked`: read, not scored; `padding`), then the decoder labels (`trained`)."""
    samples = []
    for ids, attention, labels in zip(
        batch["input_ids"], batch["attention_mask"], batch["labels"], strict=True
    ):
        pieces: list[dict] = []
        for token_id, real in zip(ids.tolist(), attention.tolist(), strict=True):
            kind = "masked" if real else "padding"
            if pieces and pieces[-1]["kind"] == kind:
                pieces[-1]["ids"].append(token_id)
            else:
                pieces.append({"kind": kind, "ids": [token_id]})
        answer = [t for t in labels.tolist() if t != IGNORE_INDEX]
        if answer:
            pieces.append({"kind": "trained", "ids": answer})
        samples.append(
            [
                {"kind": p["kind"], "text": tokenizer.decode(p["ids"], skip_special_tokens=False)}
                for p in pieces
            ]
        )
    folder.write_json(
        folder.train_insights,
        {
            "shape": list(batch["input_ids"].shape),
            "label_shape": list(batch["labels"].shape),
            "samples": samples,
        },
    )


class Seq2SeqTask(CausalLMTask):
    """Causal LM's data, loading (AutoModelForSeq2SeqLM, LoRA SEQ_2_SEQ_LM) and saving; its own
    encoding, batches, aligned loss, generation and insights."""

    def encode(self, conversation) -> Seq2SeqSample:
        return encode_seq2seq(conversation, self.tokenizer, self.fmt, self.cfg.tokenizer.max_length)

    @property
    def collate(self) -> Collate:
        return self.collate_as(labels="decoder")

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits = decoder_logits(model, batch)
        return LOSSES[self.cfg.training.loss_function](logits, batch["labels"]), {}

    def loss_tokens(self, batch: dict) -> int:
        return int((batch["labels"] != IGNORE_INDEX).sum())  # aligned: every answer token

    def loss_weight(self, batch: dict) -> int:
        if self.cfg.training.loss_function == "TokenAveragedCrossEntropy":
            return int((batch["labels"] != IGNORE_INDEX).sum())  # aligned: every answer token
        return len(batch["input_ids"])

    @torch.no_grad()
    def validate(self, model, items: list, metric: Metric) -> ValidationResult | None:
        """Sharded over the ranks in DDP: rank 0 gets the result, the others None."""
        cfg = self.cfg
        prediction = cfg.prediction
        assert isinstance(prediction, PredictionSection)  # seq2seq generates text
        was_training = model.training
        model.eval()
        batch_size = cfg.prediction.batch_size_inference or cfg.training.batch_size

        def loss_and_prediction(chunk: list[Seq2SeqSample]) -> list[tuple[float, str]]:
            batch = self.collate.padded_to_longest()(chunk)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            logits = decoder_logits(model, batch)
            losses = per_sample_loss(logits, batch["labels"]).float().cpu().tolist()
            prompts = [s.input_ids for s in chunk]
            answers = generate_answers(model, self.tokenizer, prompts, prediction, self.device)
            return list(zip(losses, answers, strict=True))

        try:
            rows = map_batches(loss_and_prediction, [self.encode(c) for c in items], batch_size)
        finally:
            model.train(was_training)
        if rows is None:
            return None
        return scored(items, rows, self.fmt, metric, cfg.prediction)

    def write_insights(self, folder, batch: dict) -> None:
        write_seq2seq_insights(folder, batch, self.tokenizer)
