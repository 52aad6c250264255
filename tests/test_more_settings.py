"""More settings, each shown to change what a user gets: quantized backbones, starting from a
previous experiment, prompt/answer tokens, attention and compile switches, the chain
augmentations, personalize, limit_chained_samples and the checkpoint/validation schedule."""

from __future__ import annotations

import functools
import json
import logging

import pandas as pd
import pytest
import torch
from conftest import load_cfg, series, tiny_config
from safetensors.torch import load_file
from test_training import train
from transformers import AutoModelForCausalLM, AutoTokenizer

from llm_studio.config.sections import AugmentationSection, DatasetSection
from llm_studio.config.settings import ConfigError
from llm_studio.data.augmentation import TrainingSamples
from llm_studio.data.prompt_format import Conversation, PromptFormat
from llm_studio.data.splitting import split_and_sample
from llm_studio.data.tokenization import encode_for_training
from llm_studio.export.model_card import build_model_card
from llm_studio.models.backbone import load_backbone, load_tokenizer, prepare_for_training

CPU = torch.device("cpu")
QUICK = {"max_length_inference": 1}


def make_cfg(model_dir, tmp_path, csv=None, **sections):
    csv = csv or tmp_path / "train.csv"
    return load_cfg(tiny_config(model_dir, csv, tmp_path / "out", **sections))


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def chain_frame(n_chains: int = 30, answer: str = "answer") -> pd.DataFrame:
    """Chains of 1, 2 and 3 rows (k % 3 + 1), shuffled so chains are not contiguous."""
    rows = []
    for k in range(n_chains):
        parent = None
        for turn in range(1 + k % 3):
            rows.append(
                {
                    "id": f"c{k}t{turn}",
                    "parent_id": parent,
                    "instruction": f"chain{k}: question {turn}",
                    "output": f"{answer} {turn}",
                }
            )
            parent = f"c{k}t{turn}"
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)


# --- backbone_dtype int8 / int4 -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_quantized_backbone_trains_lora_and_saves_a_plain_float_model(
    tmp_path, tiny_model_dir, pattern_csv, dtype, caplog
):
    import bitsandbytes as bnb

    quantized_type = {"int8": bnb.nn.Linear8bitLt, "int4": bnb.nn.Linear4bit}[dtype]
    sections = {
        "architecture": {"backbone_dtype": dtype, "gradient_checkpointing": False},
        "training": {"lora": True},
    }
    cfg = make_cfg(tiny_model_dir, tmp_path, **sections)
    model = prepare_for_training(load_backbone(cfg, CPU).model, cfg)
    quantized = [n for n, m in model.named_modules() if isinstance(m, quantized_type)]
    assert len(quantized) == 2 * 7, "every q/k/v/o/gate/up/down projection is quantized"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable), trainable

    caplog.set_level(logging.INFO)
    folder = train(
        tmp_path, tiny_model_dir, pattern_csv, prediction={"max_length_inference": 2}, **sections
    )
    assert folder.read_status().state == "finished"

    # The log and the model card say what was loaded (issue 11: they said float32 and int4).
    linear = sum(isinstance(m, torch.nn.Linear) for m in load_backbone(cfg, CPU).model.modules())
    how = "bitsandbytes nf4" if dtype == "int4" else "bitsandbytes"
    truth = (
        f"{dtype} ({how}): {len(quantized)} of {linear} linear layers quantized "
        f"({len(quantized)} bitsandbytes {quantized_type.__name__}, {linear - len(quantized)} "
        "torch Linear; weights stored "
    )
    assert any(r.getMessage().startswith(f"Backbone weights: {truth}") for r in caplog.records)
    card = build_model_card(folder.path)
    assert f"- **Backbone weights in training**: {truth}" in card
    stored = {"int4": "uint8", "int8": "int8"}[dtype]
    assert f"{len(quantized)} in {stored}), computing in float32\n" in card
    assert "quantization_config" not in json.loads(
        (folder.checkpoint_dir / "config.json").read_text()
    )
    saved = AutoModelForCausalLM.from_pretrained(folder.checkpoint_dir)
    assert {p.dtype for p in saved.parameters()} == {torch.float32}
    linear_types = {type(m) for m in saved.modules() if isinstance(m, torch.nn.Linear)}
    assert linear_types == {torch.nn.Linear}

    # The checkpoint is the float backbone plus the trained adapter (alpha 16 / r 4 = 4 x B @ A),
    # not dequantized int weights: untouched layers equal the backbone exactly.
    original = weights(tiny_model_dir)
    merged = weights(folder.checkpoint_dir)
    adapter = load_file(folder.adapter_dir / "adapter_model.safetensors")
    assert torch.equal(merged["model.embed_tokens.weight"], original["model.embed_tokens.weight"])
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged[key], original[key])
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    delta = 4.0 * adapter[f"{prefix}.lora_B.weight"] @ adapter[f"{prefix}.lora_A.weight"]
    torch.testing.assert_close(merged[key], original[key] + delta, atol=1e-5, rtol=1e-5)


def test_a_quantization_that_was_not_applied_is_said_so(tmp_path, tiny_model_dir, pattern_csv):
    """A float model reported against an int4 request (as a loader that ignored it would give):
    the report says int4 was not applied; a card without weights.json claims nothing."""
    from llm_studio.models.backbone import weights_report

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    report = weights_report(model, "int4", torch.float32)
    assert report.applied == "float32" and report.quantized_layers == 0
    assert report.summary() == (
        "float32 (all 15 linear layers unquantized); int4 was asked for but not applied"
    )
    folder = train(tmp_path, tiny_model_dir, pattern_csv, training={"epochs": 0})
    assert json.loads(folder.weights_file.read_text())["applied"] == "float32"
    folder.weights_file.unlink()  # an experiment from before weights.json was written
    card = build_model_card(folder.path)
    assert "- **Backbone weights in training**: float32 asked for; what was loaded is not " in card


# --- pretrained_weights -------------------------------------------------------------------------


def test_pretrained_weights_starts_from_a_previous_experiment(
    tmp_path, tiny_model_dir, pattern_csv
):
    first = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        "a",
        training={"lora": False, "learning_rate": 0.01},
        dataset={"data_sample": 0.5},
        prediction=QUICK,
    )
    second = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        "b",
        architecture={"pretrained_weights": str(first.path)},
        training={"epochs": 0},
        prediction=QUICK,
    )
    trained = weights(first.checkpoint_dir)
    assert not same_weights(trained, weights(tiny_model_dir))
    assert same_weights(weights(second.checkpoint_dir), trained)

    empty = tmp_path / "no_checkpoint"
    empty.mkdir()
    cfg = make_cfg(tiny_model_dir, tmp_path, architecture={"pretrained_weights": str(empty)})
    with pytest.raises(ConfigError, match="architecture.pretrained_weights"):
        load_backbone(cfg, CPU)


# --- add_prompt_answer_tokens -------------------------------------------------------------------


def test_add_prompt_answer_tokens_makes_single_tokens_and_grows_the_embeddings(
    tmp_path, tiny_model_dir, tiny_tokenizer, pattern_csv
):
    folder = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        tokenizer={"add_prompt_answer_tokens": True},
        dataset={"data_sample": 0.5},
        prediction=QUICK,
    )
    tokenizer = AutoTokenizer.from_pretrained(folder.checkpoint_dir)
    for text in ("<|prompt|>", "<|answer|>", "<|system|>"):
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == 1, text
    assert len(tokenizer) == len(tiny_tokenizer) + 3
    model = AutoModelForCausalLM.from_pretrained(folder.checkpoint_dir)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)

    first = json.loads(folder.train_insights.read_text())["samples"][0]
    prompt_text = "".join(p["text"] for p in first if p["kind"] == "masked")
    assert prompt_text.startswith("<|prompt|>Repeat") and prompt_text.endswith("<|answer|>")


def test_without_prompt_answer_tokens_the_prompt_text_is_several_tokens(tmp_path, tiny_model_dir):
    cfg = make_cfg(tiny_model_dir, tmp_path, tokenizer={"add_prompt_answer_tokens": False})
    tokenizer = load_tokenizer(cfg)
    assert len(tokenizer("<|prompt|>", add_special_tokens=False)["input_ids"]) > 1
    assert len(tokenizer) == 512


# --- attention_implementation / compile_model ---------------------------------------------------


def test_flash_attention_2_on_the_cpu_is_a_config_error(tmp_path, tiny_model_dir):
    cfg = make_cfg(
        tiny_model_dir, tmp_path, training={"attention_implementation": "flash_attention_2"}
    )
    with pytest.raises(ConfigError, match="training.attention_implementation"):
        load_backbone(cfg, CPU)


def test_compile_model_compiles_and_saves_clean_keys(
    tmp_path, tiny_model_dir, pattern_csv, monkeypatch
):
    # Inductor needs 40-120 s on this CPU for the tiny model; the eager backend still wraps the
    # model in torch.compile's OptimizedModule (the "_orig_mod" prefix), which is what saving meets.
    real_compile = torch.compile
    compiled = []

    def spy(target, **kwargs):
        if isinstance(target, torch.nn.Module):
            compiled.append(type(target).__name__)
        return real_compile(target, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch, "compile", spy)
    folder = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        environment={"compile_model": True, "gpus": [], "number_of_workers": 0, "seed": 7},
        dataset={"data_sample": 0.5},
        prediction=QUICK,
    )
    assert compiled == ["PeftModelForCausalLM"], "compile_model wraps the (LoRA) model once"
    assert folder.read_status().state == "finished"
    saved = weights(folder.checkpoint_dir)
    assert saved.keys() == weights(tiny_model_dir).keys()
    adapter = load_file(folder.adapter_dir / "adapter_model.safetensors")
    assert not [k for k in list(saved) + list(adapter) if "_orig_mod" in k]
    _, info = AutoModelForCausalLM.from_pretrained(folder.checkpoint_dir, output_loading_info=True)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"]


# --- skip_parent_probability / random_parent_probability ----------------------------------------

CHAIN = Conversation(None, ("first?", "second?", "third?"), ("one", "two", "three"))
SINGLES = [Conversation(None, (f"question {i}?",), (f"answer {i}",)) for i in range(6)]


def samples(conversations, seed=3, encode=lambda c: c, **probabilities):
    return TrainingSamples(conversations, encode, AugmentationSection(**probabilities), seed)


def test_skip_parent_probability_one_keeps_only_the_last_turn(tiny_tokenizer):
    fmt = PromptFormat.from_config(DatasetSection(), tiny_tokenizer.eos_token)
    encode = functools.partial(
        encode_for_training,
        tokenizer=tiny_tokenizer,
        fmt=fmt,
        max_length=128,
        mask_prompt_labels=True,
    )
    always = samples([CHAIN], encode=encode, skip_parent_probability=1.0)
    for epoch in range(5):
        always.set_epoch(epoch)
        assert always.conversation(0) == Conversation(None, ("third?",), ("three",))
    text = tiny_tokenizer.decode(always[0].input_ids)
    assert "third?" in text and "first?" not in text and "second?" not in text

    never = samples([CHAIN], encode=encode, skip_parent_probability=0.0)
    assert never.conversation(0) == CHAIN
    assert "first?" in tiny_tokenizer.decode(never[0].input_ids)


def test_skip_parent_probability_half_mixes_lengths_and_is_seeded():
    def lengths(seed):
        data = samples([CHAIN, CHAIN], seed=seed, skip_parent_probability=0.5)
        out = []
        for epoch in range(40):
            data.set_epoch(epoch)
            for i in range(2):
                conv = data.conversation(i)
                n = len(conv.prompts)
                assert conv == Conversation(None, CHAIN.prompts[-n:], CHAIN.answers[-n:])
                out.append(n)
        return out

    first = lengths(3)
    assert set(first) == {1, 2, 3}
    assert first == lengths(3), "same seed, epoch and index give the same conversation"
    assert first != lengths(4)


def test_random_parent_probability_prefixes_another_samples_turn():
    always = samples(SINGLES, random_parent_probability=1.0)
    for epoch in range(3):
        always.set_epoch(epoch)
        for i, original in enumerate(SINGLES):
            conv = always.conversation(i)
            assert len(conv.prompts) == 2
            assert (conv.prompts[1], conv.answers[1]) == (original.prompts[0], original.answers[0])
            others = [(c.prompts[0], c.answers[0]) for j, c in enumerate(SINGLES) if j != i]
            assert (conv.prompts[0], conv.answers[0]) in others

    never = samples(SINGLES, random_parent_probability=0.0)
    assert [never.conversation(i) for i in range(len(SINGLES))] == SINGLES


# --- augmentations are training-only ------------------------------------------------------------


def test_augmentations_do_not_touch_validation(tmp_path, tiny_model_dir):
    csv = tmp_path / "chains.csv"
    chain_frame().to_csv(csv, index=False)
    common = {
        "dataset": {"parent_id_column": "parent_id", "validation_size": 0.3},
        "training": {"epochs": 0},
        "prediction": {"max_length_inference": 3},
    }
    heavy = {
        "token_mask_probability": 0.9,
        "skip_parent_probability": 1.0,
        "random_parent_probability": 1.0,
        "neftune_noise_alpha": 50.0,
    }
    off = {name: 0.0 for name in heavy}
    plain = train(tmp_path, tiny_model_dir, csv, "plain", augmentation=off, **common)
    augmented = train(tmp_path, tiny_model_dir, csv, "aug", augmentation=heavy, **common)

    plain_rows = plain.predictions_csv.read_text()
    assert augmented.predictions_csv.read_text() == plain_rows
    assert series(augmented, "validation/loss") == series(plain, "validation/loss")
    prompts = pd.read_csv(plain.predictions_csv)["prompt"]
    assert prompts.str.count("<\\|prompt\\|>").max() == 3, "validation keeps whole chains"


# --- personalize --------------------------------------------------------------------------------


def test_personalize_renames_the_assistant_and_adds_identity_turns(tmp_path):
    csv = tmp_path / "oasst.csv"
    pd.DataFrame(
        {
            "instruction": [f"Question {i}: who built Open Assistant?" for i in range(20)],
            "output": [f"Open Assistant {i} was built by LAION." for i in range(20)],
        }
    ).to_csv(csv, index=False)

    def split(on: bool):
        dataset = {"personalize": on, "chatbot_name": "Zed", "chatbot_author": "Acme Labs"}
        cfg = make_cfg(tmp_path / "model", tmp_path, csv, dataset=dataset)
        return split_and_sample(cfg, seed=1).train

    plain, personal = split(False), split(True)
    assert all("Open Assistant" in c.answers[0] and "LAION" in c.answers[0] for c in plain)
    assert not any(c.prompts[0] in ("What is your name?", "Who are you?") for c in plain)

    assert len(personal) > len(plain)
    for before, after in zip(plain, personal, strict=False):  # personal adds rows at the end
        assert after.prompts[0] == before.prompts[0].replace("Open Assistant", "Zed")
        assert after.answers[0] == (
            before.answers[0].replace("Open Assistant", "Zed").replace("LAION", "Acme Labs")
        )
    everything = " ".join(
        p + " " + a for c in personal for p, a in zip(c.prompts, c.answers, strict=True)
    )
    assert "Open Assistant" not in everything and "LAION" not in everything
    identity = {c.prompts[0]: c.answers[0] for c in personal[len(plain) :]}
    assert "Zed" in identity["What is your name?"]
    assert any("Acme Labs" in answer for answer in identity.values())


# --- limit_chained_samples ----------------------------------------------------------------------


def test_limit_chained_samples_keeps_only_whole_conversations(tmp_path):
    csv = tmp_path / "chains.csv"
    df = chain_frame(30)
    df.to_csv(csv, index=False)
    assert len(df) == 10 * 1 + 10 * 2 + 10 * 3

    def split(limit: bool):
        dataset = {"parent_id_column": "parent_id", "limit_chained_samples": limit}
        cfg = make_cfg(tmp_path / "model", tmp_path, csv, dataset=dataset)
        data = split_and_sample(cfg, seed=0)
        return data.train + data.validation

    whole = split(True)
    assert len(whole) == 30, "one sample per chain: the rows no other row continues"
    for conv in whole:
        k = int(conv.prompts[0].split(":")[0].removeprefix("chain"))
        assert len(conv.prompts) == 1 + k % 3, conv
    assert len(split(False)) == 60


# --- save_checkpoint best -----------------------------------------------------------------------


def test_best_checkpoint_is_the_weights_of_the_best_validation(
    tmp_path, tiny_model_dir, pattern_csv
):
    # A long warm-up to a learning rate that is far too high: the loss first falls, then climbs.
    sections = {
        "training": {
            "epochs": 2,
            "evaluation_epochs": 0.5,
            "lora": False,
            "optimizer": "AdamW",
            "learning_rate": 0.1,
            "schedule": "Constant",
            "warmup_epochs": 2.0,
        },
        "prediction": {"metric": "Perplexity", "max_length_inference": 1},
    }
    sections["training"] = {**sections["training"], "save_checkpoint": "each_evaluation_epoch"}
    each = train(tmp_path, tiny_model_dir, pattern_csv, "each", **sections)
    sections["training"] = {**sections["training"], "save_checkpoint": "best"}
    best = train(tmp_path, tiny_model_dir, pattern_csv, "best", **sections)

    points, _ = best.read_charts()
    perplexity = [(p.value, p.epoch) for p in points if p.name == "validation/Perplexity"]
    assert perplexity == [
        (p.value, p.epoch) for p in each.read_charts()[0] if p.name == "validation/Perplexity"
    ], "same seed, same run"
    lowest_epoch = min(perplexity)[1]
    assert lowest_epoch != perplexity[-1][1], f"the run must get worse at the end: {perplexity}"

    snapshots = {p.name: weights(p) for p in each.path.glob("checkpoint_epoch_*")}
    assert len(snapshots) == len(perplexity) == 4
    kept = weights(best.checkpoint_dir)
    matching = [name for name, snap in snapshots.items() if same_weights(kept, snap)]
    assert matching == [f"checkpoint_epoch_{lowest_epoch:.2f}"]


# --- evaluate_before_training -------------------------------------------------------------------


@pytest.mark.parametrize("before", [False, True])
def test_evaluate_before_training_adds_a_validation_at_step_zero(
    tmp_path, tiny_model_dir, pattern_csv, before
):
    folder = train(
        tmp_path,
        tiny_model_dir,
        pattern_csv,
        training={"evaluate_before_training": before},
        dataset={"data_sample": 0.5},
        prediction=QUICK,
    )
    steps = [step for step, _ in series(folder, "validation/loss")]
    assert steps == ([0, 4] if before else [4])
