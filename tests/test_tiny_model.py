"""The tiny Llama used by tests loads and runs through plain transformers, offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_model import build_tiny_llama
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def test_text_survives_tokenize_and_decode(tiny_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    sentence = "What is the capital of Norway? Émile said: 'Oslo, of course!' 😀"
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == sentence
    assert tokenizer.unk_token_id not in ids


def test_special_tokens_match_the_model_config(tiny_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<s>", "</s>")
    assert (tokenizer.unk_token, tokenizer.pad_token) == ("<unk>", "<pad>")
    assert model.config.bos_token_id == tokenizer.bos_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.max_position_embeddings == 1024
    assert not model.config.tie_word_embeddings
    # Special tokens are single tokens, never split by BPE.
    assert len(tokenizer("</s>", add_special_tokens=False)["input_ids"]) == 1


def test_model_generates_new_tokens(tiny_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 6
    assert out.max().item() < len(tokenizer)


def test_same_seed_gives_the_same_model(tiny_dir: Path, tmp_path: Path):
    again = build_tiny_llama(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes(), name


def test_other_seed_gives_other_weights(tiny_dir: Path, tmp_path: Path):
    other = build_tiny_llama(tmp_path / "other", seed=1)
    first = AutoModelForCausalLM.from_pretrained(tiny_dir).lm_head.weight
    second = AutoModelForCausalLM.from_pretrained(other).lm_head.weight
    assert not torch.equal(first, second)
