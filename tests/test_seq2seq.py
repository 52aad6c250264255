"""Sequence To Sequence Modeling on a tiny random T5: encoding, loss, training, checkpoint, CLI."""

from __future__ import annotations

import hashlib
import json
import math

import pandas as pd
import pytest
import torch
import yaml
from conftest import default_config, load_cfg, run_cli, series, write_yaml

from llm_studio.config.seq2seq import Seq2SeqConfig
from llm_studio.config.yaml_io import from_dict, to_dict
from llm_studio.data.tokenization import IGNORE_INDEX
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.training.loop import run_experiment
from llm_studio.training.tasks import build_task

PROBLEM_TYPE = "text_sequence_to_sequence_modeling"


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    from tiny_model import build_tiny_t5

    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5") / "tiny-t5")


def train(tmp_path, model_dir, csv, name="out", **sections) -> ExperimentFolder:
    cfg = load_cfg(default_config(PROBLEM_TYPE, model_dir, csv, tmp_path / name, **sections))
    run_experiment(cfg, ExperimentStatus(state="running"))
    return ExperimentFolder(cfg.output_directory)


def loaded_task(model_dir, tmp_path, **sections):
    cfg = load_cfg(
        default_config(PROBLEM_TYPE, model_dir, tmp_path / "unused.csv", tmp_path / "o", **sections)
    )
    task = build_task(cfg, torch.device("cpu"))
    return task, task.load()


def test_tiny_t5_is_an_encoder_decoder_built_deterministically(tiny_t5_dir, tmp_path):
    from tiny_model import build_tiny_t5
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    again = build_tiny_t5(tmp_path / "again")
    digest = hashlib.sha256((tiny_t5_dir / "model.safetensors").read_bytes()).hexdigest()
    assert digest == hashlib.sha256((again / "model.safetensors").read_bytes()).hexdigest()
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5_dir)
    assert model.config.is_encoder_decoder
    assert model.config.decoder_start_token_id == tokenizer.pad_token_id


def test_encoder_reads_the_chain_and_labels_are_only_the_answer(tiny_t5_dir, tmp_path):
    task, _ = loaded_task(tiny_t5_dir, tmp_path, dataset={"parent_id_column": "parent"})
    tokenizer = task.tokenizer
    df = pd.DataFrame(
        {
            "id": ["a", "b"],
            "parent": [None, "a"],
            "instruction": ["Name a color.", "Name another one."],
            "output": ["red", "blue"],
        }
    )
    conv = task.build_items(df, "train.csv")[1]
    sample = task.encode(conv)

    encoder_text = tokenizer.decode(sample.input_ids)
    assert (
        encoder_text
        == "<|prompt|>Name a color.</s><|answer|>red</s><|prompt|>Name another one.</s><|answer|>"
    )
    assert sample.labels == tokenizer("blue", add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]

    # The encoder input is what the saved chat template renders for the conversation.
    tokenizer.chat_template = task.fmt.chat_template()
    messages = [
        {"role": "user", "content": "Name a color."},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "Name another one."},
    ]
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        encoder_text
    )

    task.cfg.dataset.add_eos_token_to_answer = False
    task._set_tokenizer(tokenizer)
    assert task.encode(conv).labels == tokenizer("blue", add_special_tokens=False)["input_ids"]


def test_long_prompt_is_cut_on_the_left_and_batches_keep_labels_apart(tiny_t5_dir, tmp_path):
    from llm_studio.data.prompt_format import Conversation

    task, backbone = loaded_task(tiny_t5_dir, tmp_path, tokenizer={"max_length": 16})
    tokenizer = task.tokenizer
    long_conv = Conversation(
        None, ("one two three four five six seven eight nine ten " * 3,), ("x",)
    )
    full = tokenizer(task.fmt.render(long_conv, with_last_answer=False), add_special_tokens=False)
    sample = task.encode(long_conv)
    assert len(full["input_ids"]) > 16
    assert sample.input_ids == full["input_ids"][-16:]
    assert tokenizer.decode(sample.input_ids).endswith("ten </s><|answer|>")

    short = task.encode(Conversation(None, ("hi",), ("a much longer answer here",)))
    batch = task.collate([sample, short])
    assert [k for k in batch if k.endswith("input_ids")] == ["input_ids"]
    assert batch["input_ids"].shape == (2, 16) and batch["labels"].shape[1] == len(short.labels)
    assert batch["attention_mask"][1].sum() == len(short.input_ids)
    assert batch["labels"][0].tolist() == sample.labels + [IGNORE_INDEX] * (
        len(short.labels) - len(sample.labels)
    )

    # The aligned loss is exactly the model's own teacher-forced loss on these labels.
    model = backbone.model.eval()
    loss, extra = task.loss(model, batch)
    reference = model(**batch).loss
    assert extra == {} and torch.allclose(loss, reference, atol=1e-6)


def test_lora_with_gradient_checkpointing_trains_every_linear_layer_but_the_head(
    tiny_t5_dir, tmp_path
):
    from llm_studio.data.prompt_format import Conversation

    task, backbone = loaded_task(
        tiny_t5_dir,
        tmp_path,
        training={"lora": True},
        architecture={"gradient_checkpointing": True},
    )
    model = backbone.model
    model.train()
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    assert any(".encoder." in n for n in trained) and any(".decoder." in n for n in trained)
    assert not any("lm_head" in n for n in trained)
    batch = task.collate([task.encode(Conversation(None, ("hi",), ("there",)))])
    loss, _ = task.loss(model, batch)
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trained)


def test_seq2seq_learns_and_its_checkpoint_reproduces_the_predictions(
    tmp_path, tiny_t5_dir, pattern_csv
):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    folder = train(
        tmp_path,
        tiny_t5_dir,
        pattern_csv,
        training={
            "epochs": 4,
            "learning_rate": 0.005,
            "schedule": "Constant",
            "lora": True,
            "lora_r": 16,
            "lora_alpha": 64,
            "evaluate_before_training": True,
            # The pattern rows' length is their answer's word count: grouped batches would
            # each hold one count only, and 4 epochs of the tiny T5 then learn no exact answer.
            "length_grouped_batches": False,
        },
    )
    losses = series(folder, "validation/loss")
    assert losses[0][0] == 0, "evaluate_before_training validates at step 0"
    assert losses[-1][1] < losses[0][1] - 2.0, losses
    names = {p.name for p in folder.read_charts()[0]}
    assert {"train/loss", "train/lr", "validation/loss", "validation/BLEU"} <= names
    assert (folder.adapter_dir / "adapter_config.json").is_file()

    insights = json.loads(folder.train_insights.read_text())
    kinds = [piece["kind"] for piece in insights["samples"][0]]
    assert kinds[0] == "masked" and kinds[-1] == "trained"
    prompt_text = "".join(p["text"] for p in insights["samples"][0] if p["kind"] == "masked")
    assert prompt_text.startswith("<|prompt|>Repeat") and prompt_text.endswith("<|answer|>")
    chosen = json.loads(folder.prediction_insights.read_text())
    assert set(chosen) == {"metric", "best", "worst", "random"}

    predictions = pd.read_csv(folder.predictions_csv, keep_default_na=False)
    assert list(predictions.columns[:3]) == ["prompt", "target_text", "predicted_text"]
    assert len(predictions) == 19
    assert predictions["loss"].mean() == pytest.approx(losses[-1][1], rel=1e-6)
    assert (predictions["predicted_text"] == predictions["target_text"]).any()

    # The checkpoint is a plain transformers folder that generates the validation predictions.
    cfg = yaml.safe_load(folder.cfg_yaml.read_text())
    model = AutoModelForSeq2SeqLM.from_pretrained(folder.checkpoint_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder.checkpoint_dir)
    for _, row in predictions.head(4).iterrows():
        inputs = tokenizer(row["prompt"], add_special_tokens=False, return_tensors="pt")
        output = model.generate(
            **inputs,
            max_new_tokens=cfg["prediction"]["max_length_inference"],
            min_new_tokens=cfg["prediction"]["min_length_inference"],
            do_sample=False,
            num_beams=1,
        )
        text = tokenizer.decode(output[0], skip_special_tokens=True).strip()
        assert text == row["predicted_text"]


def test_perplexity_is_exp_of_each_rows_loss(tmp_path, tiny_t5_dir, pattern_csv):
    folder = train(
        tmp_path,
        tiny_t5_dir,
        pattern_csv,
        training={"epochs": 0},
        prediction={"metric": "Perplexity", "max_length_inference": 2},
    )
    predictions = pd.read_csv(folder.predictions_csv, keep_default_na=False)
    assert len(predictions) == 19 and (predictions["loss"] > 0).all()
    for loss, perplexity in zip(predictions["loss"], predictions["Perplexity"], strict=True):
        assert perplexity == pytest.approx(math.exp(loss), rel=1e-6)
    ((step, value),) = series(folder, "validation/Perplexity")
    assert step == 0 and value == pytest.approx(predictions["Perplexity"].mean(), rel=1e-6)


def test_default_config_round_trips_and_train_py_runs_it(tmp_path, tiny_t5_dir, pattern_csv):
    default = Seq2SeqConfig()
    data = yaml.safe_load(yaml.safe_dump(to_dict(default)))
    again, warnings = from_dict(data)
    assert warnings == [] and again == default
    assert not hasattr(again.dataset, "mask_prompt_labels")

    cfg = default_config(
        PROBLEM_TYPE,
        tiny_t5_dir,
        pattern_csv,
        tmp_path / "cli",
        dataset={"data_sample": 0.5},
        prediction={"max_length_inference": 2},
    )
    path = write_yaml(tmp_path / "cfg.yaml", cfg)
    result = run_cli("train.py", "-Y", str(path), timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folder = ExperimentFolder(tmp_path / "cli")
    assert folder.read_status().state == "finished"
    saved = yaml.safe_load(folder.cfg_yaml.read_text())
    assert saved["problem_type"] == PROBLEM_TYPE
    assert json.loads((folder.checkpoint_dir / "config.json").read_text())["is_encoder_decoder"]
    assert "unknown setting" not in folder.logs.read_text()
