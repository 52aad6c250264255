"""Optimization settings (schedules, optimizers, weight decay, clipping, losses) and prediction
settings (how answers are generated), each shown to change what a user gets."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import load_cfg, pattern_rows, tiny_config

from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.training.loop import optimizer_step, run_experiment
from llm_studio.training.losses import LOSSES
from llm_studio.training.optimizers import build_optimizer, build_scheduler

CPU = torch.device("cpu")


def make_cfg(tmp_path, model_dir=None, **sections):
    model_dir = model_dir or tmp_path / "model"
    return load_cfg(tiny_config(model_dir, tmp_path / "train.csv", tmp_path / "out", **sections))


# --- learning-rate schedules ------------------------------------------------------------------


def schedule_lrs(schedule: str, warmup_steps: int, total_steps: int = 10) -> list[float]:
    """The learning rate each of the steps uses (and the one after the last), base lr 1.0."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = build_scheduler(optimizer, schedule, warmup_steps, total_steps)
    lrs = []
    for _ in range(total_steps + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_constant_schedule_keeps_the_learning_rate():
    assert schedule_lrs("Constant", 0) == [1.0] * 11


def test_linear_schedule_decays_linearly_to_zero():
    assert schedule_lrs("Linear", 0) == pytest.approx([1 - t / 10 for t in range(11)], abs=1e-12)


def test_cosine_schedule_follows_half_a_cosine():
    expected = [0.5 * (1 + math.cos(math.pi * t / 10)) for t in range(11)]
    lrs = schedule_lrs("Cosine", 0)
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert lrs[5] == pytest.approx(0.5) and lrs[-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "schedule, decay",
    [
        ("Constant", lambda t: 1.0),
        ("Linear", lambda t: 1 - t),
        ("Cosine", lambda t: 0.5 * (1 + math.cos(math.pi * t))),
    ],
)
def test_warmup_ramps_up_then_the_schedule_decays_over_the_rest(schedule, decay):
    lrs = schedule_lrs(schedule, warmup_steps=4)
    ramp = [(t + 1) / 5 for t in range(4)]  # linear from 0 towards 1 over 4 steps
    rest = [decay((t - 4) / 6) for t in range(4, 11)]  # the 6 remaining steps
    assert lrs == pytest.approx(ramp + rest, abs=1e-12)
    assert lrs[:5] == sorted(lrs[:5]) and lrs[0] < lrs[4] == 1.0


# --- schedule settings, end to end -----------------------------------------------------------


def run(tmp_path, model_dir, csv, **training) -> list[float]:
    """An in-process run (9 batches per epoch); returns the charted train/lr per step."""
    cfg = load_cfg(
        tiny_config(
            model_dir,
            csv,
            tmp_path / "run",
            training={"save_checkpoint": "disable", "evaluation_epochs": 10.0, **training},
            prediction={"max_length_inference": 1},
        )
    )
    run_experiment(cfg, ExperimentStatus(state="running"))
    points, _ = ExperimentFolder(cfg.output_directory).read_charts()
    return [p.value for p in sorted(points, key=lambda p: p.step) if p.name == "train/lr"]


def test_learning_rate_is_the_rate_a_constant_run_uses(tmp_path, tiny_model_dir, pattern_csv):
    lrs = run(tmp_path, tiny_model_dir, pattern_csv, schedule="Constant", learning_rate=0.003)
    assert lrs == pytest.approx([0.003] * 9)


def test_fractional_warmup_epochs_ramp_up_over_that_share_of_an_epoch(
    tmp_path, tiny_model_dir, pattern_csv
):
    lr = 0.003
    lrs = run(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        schedule="Constant",
        learning_rate=lr,
        warmup_epochs=0.5,
    )
    assert len(lrs) == 9
    reached = next(i for i, value in enumerate(lrs) if value == pytest.approx(lr))
    assert reached in (4, 5), f"half of 9 batches warms up: {lrs}"
    warmup = lrs[:reached]
    assert all(0 < a < b < lr for a, b in pairwise(warmup))
    assert lrs[reached:] == pytest.approx([lr] * (9 - reached))


# --- optimizers -------------------------------------------------------------------------------


def _optimizer_classes():
    import bitsandbytes as bnb

    return {
        "Adadelta": torch.optim.Adadelta,
        "Adam": torch.optim.Adam,
        "AdamW": torch.optim.AdamW,
        "AdamW8bit": bnb.optim.AdamW8bit,
        "RMSprop": torch.optim.RMSprop,
        "SGD": torch.optim.SGD,
    }


def linear_with_gradient(seed: int = 0, size: int = 64) -> torch.nn.Linear:
    """The same small layer and the same gradient every time (64x64 weights: bnb's 8-bit size)."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(size, size)
    x = torch.randn(4, size)
    (layer(x) ** 2).sum().backward()
    return layer


def make_cfg_training(**training):
    """Settings for tests that only need the training section (no model or data is read)."""
    return load_cfg(tiny_config(Path("model"), Path("train.csv"), Path("out"), training=training))


def one_step(name: str, **training) -> tuple[torch.nn.Linear, torch.optim.Optimizer]:
    layer = linear_with_gradient()
    optimizer = build_optimizer(layer, make_cfg_training(optimizer=name, **training).training)
    optimizer.step()
    return layer, optimizer


@pytest.mark.parametrize("name", ["Adadelta", "Adam", "AdamW", "AdamW8bit", "RMSprop", "SGD"])
def test_optimizer_setting_builds_that_optimizer(name):
    before = linear_with_gradient().weight.detach().clone()
    layer, optimizer = one_step(name, learning_rate=0.01)
    assert type(optimizer) is _optimizer_classes()[name]
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert not torch.equal(layer.weight, before), "one step moves the weights"
    if name == "AdamW8bit":
        # bitsandbytes works on the CPU here; its moments are stored in 8 bits
        assert optimizer.state[layer.weight]["state1"].dtype == torch.uint8


def test_different_optimizers_take_different_steps_from_the_same_gradient():
    names = ["Adadelta", "Adam", "AdamW", "RMSprop", "SGD"]
    # Adam and AdamW differ only in how they decay weights: give them some to decay.
    weights = {
        n: one_step(n, learning_rate=0.01, weight_decay=0.1)[0].weight.detach() for n in names
    }
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(weights[a], weights[b]), f"{a} and {b} gave the same step"
    # The 8-bit AdamW approximates AdamW's step.
    eight_bit = one_step("AdamW8bit", learning_rate=0.01, weight_decay=0.1)[0].weight.detach()
    start = linear_with_gradient().weight.detach()
    assert torch.allclose(eight_bit - start, weights["AdamW"] - start, atol=2e-3)
    assert not torch.allclose(weights["SGD"] - start, weights["AdamW"] - start, atol=2e-3)


@pytest.mark.parametrize("decay", [0.0, 0.5])
def test_weight_decay_shrinks_weights_without_any_gradient(decay):
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 8)
    before = [p.detach().clone() for p in layer.parameters()]
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)
    cfg = make_cfg_training(optimizer="AdamW", learning_rate=0.1, weight_decay=decay)
    build_optimizer(layer, cfg.training).step()
    # decoupled decay on the weight matrix: w <- w * (1 - lr * weight_decay); the bias, like
    # norms, is left undecayed (the usual practice)
    assert torch.allclose(layer.weight, before[0] * (1 - 0.1 * decay))
    assert torch.equal(layer.bias, before[1])
    if decay:
        assert layer.weight.norm() < before[0].norm()


def test_differential_learning_rate_layers_get_their_own_rate():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 8)
    cfg = make_cfg_training(
        optimizer="SGD",
        learning_rate=0.01,
        differential_learning_rate_layers=["bias"],
        differential_learning_rate=1e-5,
    )
    optimizer = build_optimizer(layer, cfg.training)
    groups = [(g["lr"], [id(p) for p in g["params"]]) for g in optimizer.param_groups]
    assert groups == [(0.01, [id(layer.weight)]), (1e-5, [id(layer.bias)])]

    before = [p.detach().clone() for p in (layer.weight, layer.bias)]
    for p in layer.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert torch.allclose(before[0] - layer.weight, torch.full_like(layer.weight, 0.01), atol=1e-6)
    assert torch.allclose(before[1] - layer.bias, torch.full_like(layer.bias, 1e-5), atol=1e-7)


@pytest.mark.parametrize("clip", [0.0, 0.01])
def test_gradient_clip_limits_the_gradient_norm_of_an_update(clip):
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 8)
    before = [p.detach().clone() for p in layer.parameters()]
    cfg = make_cfg_training(optimizer="SGD", learning_rate=0.1)
    optimizer = build_optimizer(layer, cfg.training)
    scheduler = build_scheduler(optimizer, "Constant", 0, 10)
    (1000 * layer(torch.randn(4, 8)) ** 2).sum().backward()
    raw_norm = torch.cat([p.grad.flatten() for p in layer.parameters()]).norm().item()

    norms = []  # the gradient norm each update sees
    optimizer.register_step_pre_hook(
        lambda *_: norms.append(
            torch.cat([p.grad.flatten() for p in layer.parameters()]).norm().item()
        )
    )
    optimizer_step(layer, optimizer, scheduler, gradient_clip=clip)
    moved = torch.cat(
        [(p - b).flatten() for p, b in zip(layer.parameters(), before, strict=True)]
    ).norm()

    assert raw_norm > 1.0
    if clip:
        assert norms == [pytest.approx(clip, rel=1e-4)]
        assert norms[0] <= clip * (1 + 1e-6)
        assert moved.item() == pytest.approx(0.1 * clip, rel=1e-4)  # SGD's first step: lr * grad
    else:
        assert norms == [pytest.approx(raw_norm)]
        assert moved.item() == pytest.approx(0.1 * raw_norm, rel=1e-4)


# --- losses -----------------------------------------------------------------------------------


def test_token_and_sample_averaged_losses_weigh_short_answers_differently():
    torch.manual_seed(0)
    vocab = 11
    logits = torch.randn(2, 7, vocab) * 3
    labels = torch.full((2, 7), -100)
    labels[0, 3] = 4  # one labelled token
    labels[1, 1:6] = torch.tensor([1, 2, 3, 9, 10])  # five labelled tokens

    def token_loss(row: int, pos: int) -> torch.Tensor:
        # position `pos` is predicted from the logits one step earlier
        return F.cross_entropy(logits[row, pos - 1][None], labels[row, pos][None])

    first = [token_loss(0, 3)]
    second = [token_loss(1, p) for p in range(1, 6)]
    by_token = torch.stack(first + second).mean()
    by_sample = (torch.stack(first).mean() + torch.stack(second).mean()) / 2

    token = LOSSES["TokenAveragedCrossEntropy"](logits, labels)
    sample = LOSSES["SampleAveragedCrossEntropy"](logits, labels)
    assert token.item() == pytest.approx(by_token.item(), rel=1e-5)
    assert sample.item() == pytest.approx(by_sample.item(), rel=1e-5)
    assert abs(token.item() - sample.item()) > 0.1


# --- generation -------------------------------------------------------------------------------

PROMPTS = [
    "The capital of France is",
    "What is 7 plus 5?",
    "Hello, who are you?",
    "A river is",
    "Numbers: 0 1 2",
    "Reverse the word",
]


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return model, tokenizer


@pytest.fixture(scope="module")
def prompt_ids(lm):
    _, tokenizer = lm
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]


def prediction(tmp_path, **settings):
    """Prediction settings; greedy, no penalty, no minimum unless a test says otherwise."""
    base = {"repetition_penalty": 1.0, "min_length_inference": 0, "max_length_inference": 8}
    return make_cfg(tmp_path, prediction={**base, **settings}).prediction


class GenerateRecorder:
    """Counts model.generate calls and keeps the new token ids of each row."""

    def __init__(self, model, monkeypatch):
        self.calls: list[dict] = []
        original = model.generate

        def recording(*args, **kwargs):
            output = original(*args, **kwargs)
            prompt_len = kwargs["input_ids"].shape[1]
            self.calls.append({"kwargs": kwargs, "new": output[:, prompt_len:].tolist()})
            return output

        monkeypatch.setattr(model, "generate", recording)

    @property
    def new_tokens(self) -> list[list[int]]:
        return self.calls[-1]["new"]


def generate(lm, prompts, pred, seed=None):
    from llm_studio.models.generation import generate_batch

    model, tokenizer = lm
    if seed is not None:
        torch.manual_seed(seed)
    return generate_batch(model, tokenizer, prompts, pred, CPU)


@pytest.mark.parametrize("max_length", [3, 5])
def test_max_length_inference_caps_the_new_tokens(
    lm, prompt_ids, tmp_path, monkeypatch, max_length
):
    recorder = GenerateRecorder(lm[0], monkeypatch)
    texts = generate(lm, prompt_ids, prediction(tmp_path, max_length_inference=max_length))
    eos = lm[1].eos_token_id
    assert all(eos not in row for row in recorder.new_tokens), "the random model never stops"
    assert [len(row) for row in recorder.new_tokens] == [max_length] * len(PROMPTS)
    assert all(texts)


@pytest.fixture(scope="module")
def eager_to_stop(tiny_model_dir):
    """The tiny model with its head biased towards EOS: it stops at once unless forced on."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[model.config.eos_token_id] = 100.0
    model.lm_head = biased
    return model


@pytest.mark.parametrize(
    "min_length, max_length, expected_words",
    [(0, 8, 0), (4, 8, 4), (6, 6, 6), (10, 3, 3)],
)
def test_min_length_inference_holds_off_the_end_of_text(
    lm, eager_to_stop, prompt_ids, tmp_path, monkeypatch, min_length, max_length, expected_words
):
    _, tokenizer = lm
    recorder = GenerateRecorder(eager_to_stop, monkeypatch)
    pred = prediction(tmp_path, min_length_inference=min_length, max_length_inference=max_length)
    texts = generate((eager_to_stop, tokenizer), prompt_ids, pred)
    eos = tokenizer.eos_token_id
    for row, text in zip(recorder.new_tokens, texts, strict=True):
        # the first `expected_words` tokens are real ones, then EOS as soon as it is allowed
        assert eos not in row[:expected_words]
        if expected_words < max_length:
            assert row[expected_words] == eos
        else:
            assert len(row) == max_length
        assert (text == "") == (expected_words == 0)


def test_do_sample_varies_with_the_seed_and_greedy_does_not(lm, prompt_ids, tmp_path):
    greedy = prediction(tmp_path, do_sample=False)
    assert generate(lm, prompt_ids, greedy, seed=1) == generate(lm, prompt_ids, greedy, seed=2)
    sample = prediction(tmp_path, do_sample=True, temperature=1.0)
    first = generate(lm, prompt_ids, sample, seed=1)
    assert first == generate(lm, prompt_ids, sample, seed=1), "a seed repeats a sample"
    assert first != generate(lm, prompt_ids, sample, seed=2)
    assert first != generate(lm, prompt_ids, greedy)


@pytest.fixture(scope="module")
def confident(tiny_model_dir):
    """The tiny model with a sharper head (same argmax, larger logit gaps than random init)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.lm_head.weight.mul_(50)
    return model


def test_low_temperature_samples_the_greedy_answer(lm, confident, prompt_ids, tmp_path):
    model = (confident, lm[1])
    greedy = generate(model, prompt_ids, prediction(tmp_path))
    assert greedy == generate(lm, prompt_ids, prediction(tmp_path)), "same argmax as the original"
    cold = prediction(tmp_path, do_sample=True, temperature=0.01)
    hot = prediction(tmp_path, do_sample=True, temperature=1.0)
    for seed in range(3):
        assert generate(model, prompt_ids, cold, seed=seed) == greedy
        assert generate(model, prompt_ids, hot, seed=seed) != greedy


@pytest.mark.parametrize("setting", [{"top_k": 1}, {"top_p": 1e-9}])
def test_top_k_one_or_tiny_top_p_sample_the_greedy_answer(lm, prompt_ids, tmp_path, setting):
    greedy = generate(lm, prompt_ids, prediction(tmp_path))
    narrow = prediction(tmp_path, do_sample=True, temperature=1.0, **setting)
    wide = prediction(tmp_path, do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
    for seed in range(3):
        assert generate(lm, prompt_ids, narrow, seed=seed) == greedy
        assert generate(lm, prompt_ids, wide, seed=seed) != greedy


def test_repetition_penalty_discourages_repeated_tokens(lm, prompt_ids, tmp_path, monkeypatch):
    recorder = GenerateRecorder(lm[0], monkeypatch)
    plain = generate(lm, prompt_ids, prediction(tmp_path, max_length_inference=16))
    plain_rows = recorder.new_tokens
    penalized = generate(
        lm, prompt_ids, prediction(tmp_path, max_length_inference=16, repetition_penalty=3.0)
    )
    penalized_rows = recorder.new_tokens

    def repeats(rows):
        return sum(len(r) - len(set(r)) for r in rows)

    assert any(a != b for a, b in zip(plain, penalized, strict=True))
    assert repeats(penalized_rows) < repeats(plain_rows)


def _log_prob(model, prompt: list[int], new: list[int]) -> float:
    ids = torch.tensor([prompt + new])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    return sum(log_probs[len(prompt) - 1 + i, t].item() for i, t in enumerate(new))


def test_num_beams_searches_for_likelier_answers(lm, prompt_ids, tmp_path, monkeypatch):
    model, _ = lm
    recorder = GenerateRecorder(model, monkeypatch)
    greedy = generate(lm, prompt_ids, prediction(tmp_path, num_beams=1))
    greedy_rows = recorder.new_tokens
    beams = generate(lm, prompt_ids, prediction(tmp_path, num_beams=3))
    beam_rows = recorder.new_tokens
    assert recorder.calls[-1]["kwargs"]["num_beams"] == 3
    assert any(a != b for a, b in zip(greedy, beams, strict=True))
    gains = [
        _log_prob(model, p, b) - _log_prob(model, p, g)
        for p, g, b in zip(prompt_ids, greedy_rows, beam_rows, strict=True)
    ]
    assert max(gains) > 1e-3, f"beam search finds a likelier continuation somewhere: {gains}"


def _stop_candidate(text: str) -> int:
    """Where a plain two-character piece first occurs, somewhere after the start of the text."""
    for i in range(3, len(text) - 2):
        piece = text[i : i + 2]
        if piece.isascii() and piece.isalnum() and text.find(piece) == i:
            return i
    raise AssertionError(f"no stop candidate in {text!r}")


def test_stop_tokens_end_the_answer_before_the_stop_text(lm, prompt_ids, tmp_path, monkeypatch):
    recorder = GenerateRecorder(lm[0], monkeypatch)
    prompt = [prompt_ids[1]]
    (full,) = generate(lm, prompt, prediction(tmp_path, max_length_inference=12))
    index = _stop_candidate(full)
    stop = full[index : index + 2]

    (cut,) = generate(
        lm, prompt, prediction(tmp_path, max_length_inference=12, stop_tokens=f"zqzq, {stop}")
    )
    assert cut == full[:index].strip()
    assert len(cut) < len(full) and full.startswith(cut)
    assert stop not in cut
    # generation itself stopped early instead of running to max_length_inference
    assert len(recorder.new_tokens[0]) < 12


def test_batch_size_inference_sets_the_generation_batches(lm, tmp_path, monkeypatch):
    from llm_studio.data.prompt_format import Conversation, PromptFormat
    from llm_studio.data.tokenization import encode_for_training
    from llm_studio.metrics.text import METRICS
    from llm_studio.training.validation import validate

    model, tokenizer = lm
    conversations = [
        Conversation(None, (row.instruction,), (row.output,))
        for row in pattern_rows(10).itertuples()
    ]
    predictions, calls = {}, {}
    for batch_size in (2, 5, 0):
        cfg = make_cfg(
            tmp_path,
            prediction={
                "batch_size_inference": batch_size,
                "max_length_inference": 4,
                "min_length_inference": 0,
                "repetition_penalty": 1.0,
            },
            training={"batch_size": 4},
        )
        fmt = PromptFormat.from_config(cfg.dataset, tokenizer.eos_token)
        encoded = [encode_for_training(c, tokenizer, fmt, 64, True) for c in conversations]
        with monkeypatch.context() as patch:
            recorder = GenerateRecorder(model, patch)
            result = validate(
                model,
                tokenizer,
                fmt,
                conversations,
                encoded,
                cfg,
                CPU,
                METRICS["BLEU"],
            )
        predictions[batch_size] = result.predictions
        calls[batch_size] = [len(c["new"]) for c in recorder.calls]
    assert calls == {2: [2] * 5, 5: [5, 5], 0: [4, 4, 2]}, "0 uses the training batch size"
    assert predictions[2] == predictions[5] == predictions[0]
    assert len(predictions[2]) == 10


def test_generation_uses_the_kv_cache(lm, prompt_ids, tmp_path, monkeypatch):
    from llm_studio.models.generation import generation_kwargs

    pred = prediction(tmp_path)
    assert generation_kwargs(pred, lm[1])["use_cache"] is True
    recorder = GenerateRecorder(lm[0], monkeypatch)
    generate(lm, prompt_ids, pred)
    assert recorder.calls[-1]["kwargs"]["use_cache"] is True
