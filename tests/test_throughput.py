"""The training hot path: batches grouped by length, padding-free packing, logits only where
labels count, and gradient accumulation weighed by tokens. Each change must leave the
numbers exactly as they were (losses, gradients, resumed orders)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import load_cfg, series, tiny_config

from llm_studio.data.batching import EpochBatches, pack_rows
from llm_studio.data.tokenization import EncodedSample, collate_training
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.training.loop import run_experiment
from llm_studio.training.losses import LOSSES
from llm_studio.training.optimizers import build_optimizer
from llm_studio.training.tasks import build_task

CPU = torch.device("cpu")


def varied_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """Prompts and answers of very different lengths."""
    rng = np.random.default_rng(seed)
    words = ["red", "blue", "cat", "dog", "sun", "moon", "tree", "fish"]
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "instruction": [
                " ".join(rng.choice(words, int(rng.integers(1, 25)))) for _ in range(n)
            ],
            "output": [" ".join(rng.choice(words, int(rng.integers(1, 30)))) for _ in range(n)],
        }
    )


def _task_and_model(tiny_model_dir, tmp_path, **training):
    csv = tmp_path / "rows.csv"
    varied_rows(8).to_csv(csv, index=False)
    cfg = load_cfg(
        tiny_config(
            tiny_model_dir, csv, tmp_path / "out", training=training, tokenizer={"max_length": 256}
        )
    )
    torch.manual_seed(0)
    task = build_task(cfg, CPU)
    model = task.load().model
    model.train()
    return cfg, task, model


def _samples(task, n: int = 4) -> list[EncodedSample]:
    from llm_studio.data.prompt_format import Conversation

    rows = varied_rows(n, seed=3)
    return [
        task.encode(Conversation("", (row.instruction,), (row.output,)))
        for row in rows.itertuples()
    ]


def _loss_and_grads(task, model, batch):
    model.zero_grad(set_to_none=True)
    loss, _ = task.loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize(
    "loss_function", ["TokenAveragedCrossEntropy", "SampleAveragedCrossEntropy"]
)
def test_packed_loss_and_gradients_equal_the_padded_batch(tiny_model_dir, tmp_path, loss_function):
    """The same samples padded and packed into one row: the same loss and gradients (1e-5),
    and both equal the loss over every position's logits (the old path)."""
    cfg, task, model = _task_and_model(
        tiny_model_dir,
        tmp_path,
        loss_function=loss_function,
        sample_packing=True,
        lora=False,
        lora_dropout=0.0,
    )
    assert task.packing, "the tiny Llama keeps packed samples apart"
    samples = _samples(task)
    assert len({len(s.input_ids) for s in samples}) > 1, "rows of different lengths"
    batch = collate_training(samples, task.tokenizer.pad_token_id, 1.0, 512)

    packed_loss, packed_grads = _loss_and_grads(task, model, batch)
    task.packing = False
    padded_loss, padded_grads = _loss_and_grads(task, model, batch)
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    full_loss = LOSSES[loss_function](logits, batch["labels"])

    assert torch.allclose(packed_loss, padded_loss, atol=1e-5)
    assert torch.allclose(padded_loss, full_loss, atol=1e-5)
    assert packed_grads.keys() == padded_grads.keys() and packed_grads
    for name, grad in packed_grads.items():
        assert torch.allclose(grad, padded_grads[name], atol=1e-5), name


def test_a_packed_sample_does_not_see_its_neighbours(tiny_model_dir, tmp_path):
    """Changing one sample of a packed row leaves the other samples' logits unchanged."""
    cfg, task, model = _task_and_model(tiny_model_dir, tmp_path, sample_packing=True)
    model.eval()
    samples = _samples(task, 3)
    changed = list(samples)
    changed[1] = EncodedSample(
        [5 + (i % 7) for i in range(len(samples[1].input_ids) + 3)],
        [5 + (i % 7) for i in range(len(samples[1].input_ids) + 3)],
    )

    def logits_of(batch_samples):
        packed = pack_rows(collate_training(batch_samples, task.tokenizer.pad_token_id, 1.0, 512))
        with torch.no_grad():
            out = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits
        ids = packed["sample_ids"][0]
        return [out[0, ids == k] for k in range(len(batch_samples))]

    before, after = logits_of(samples), logits_of(changed)
    for k in (0, 2):
        assert torch.allclose(before[k], after[k], atol=1e-5), f"sample {k} saw sample 1"
    assert before[1].shape != after[1].shape


def test_length_grouped_batches_are_seeded_resumable_and_pad_less():
    lengths = list(np.random.default_rng(0).lognormal(4, 0.8, size=403).astype(int) + 1)
    grouped = EpochBatches(lengths, 4, seed=7, drop_last=True, group_by_length=True)
    shuffled = EpochBatches(lengths, 4, seed=7, drop_last=True, group_by_length=False)

    def padding(order):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in order)

    first = grouped.batches()
    assert len(first) == len(grouped) == 100
    assert sorted(i for b in first for i in b) == sorted({i for b in first for i in b})
    assert padding(first) < padding(shuffled.batches()) / 3
    assert EpochBatches(lengths, 4, 7, True, True).batches() == first  # seeded
    grouped.set_epoch(1)
    assert grouped.batches() != first  # another order each epoch
    grouped.set_epoch(1, start=37)
    assert list(grouped) == grouped.batches()[37:]  # a resumed epoch skips what it trained


def test_no_weight_decay_on_norms_and_biases(tiny_model_dir, tmp_path):
    cfg, task, model = _task_and_model(tiny_model_dir, tmp_path, lora=False, weight_decay=0.1)
    optimizer = build_optimizer(model, cfg.training)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        expected = 0.0 if ("norm" in name or param.ndim < 2) else 0.1
        assert decay[id(param)] == expected, name


def _train_once(tiny_model_dir, tmp_path, name, **training):
    """One update of a full fine-tune on 8 rows of different lengths; the saved weights."""
    csv = tmp_path / "rows.csv"
    varied_rows(16, seed=5).to_csv(csv, index=False)  # half held out for validation: 8 train
    out = tmp_path / name
    cfg = load_cfg(
        tiny_config(
            tiny_model_dir,
            csv,
            out,
            training={"lora": False, "optimizer": "SGD", "learning_rate": 0.1, **training},
            prediction={"metric": "Perplexity"},
        )
    )
    out.mkdir()
    run_experiment(cfg, ExperimentStatus(state="running"))
    from safetensors.torch import load_file

    return load_file(out / "checkpoint" / "model.safetensors"), ExperimentFolder(out)


def test_accumulating_two_batches_of_4_equals_one_batch_of_8(tiny_model_dir, tmp_path):
    """Token-averaged loss: every labelled token of the update weighs the same, whichever
    micro-batch it is in (rows of very different lengths)."""
    whole, folder = _train_once(tiny_model_dir, tmp_path, "whole", batch_size=8)
    accumulated, _ = _train_once(
        tiny_model_dir, tmp_path, "accumulated", batch_size=4, grad_accumulation=2
    )
    from safetensors.torch import load_file

    before = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.allclose(before[k], whole[k], atol=1e-4) for k in before), "trained"
    for key in whole:
        assert torch.allclose(whole[key], accumulated[key], atol=1e-6), key
    assert len(series(folder, "train/loss")) == 1
    assert series(folder, "train/tokens_per_s")[-1][1] > 0


def test_the_fused_loss_sees_the_head_inputs_of_the_kept_positions(tiny_model_dir, tmp_path):
    """The fused linear cross entropy (CUDA, liger) takes the head's inputs at the labelled
    positions; here: those inputs through the head are exactly the kept logits."""
    from llm_studio.training.losses import head_inputs, predicting_positions

    cfg, task, model = _task_and_model(tiny_model_dir, tmp_path)
    model.eval()
    batch = collate_training(_samples(task), task.tokenizer.pad_token_id, 1.0, 512)
    keep = predicting_positions(batch["labels"])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        head, hidden = head_inputs(model, inputs, keep)
        kept = model(**inputs, logits_to_keep=keep).logits
    assert hidden.shape[0] == int(keep.sum()) > 0
    assert torch.allclose(head(hidden), kept, atol=1e-5)
