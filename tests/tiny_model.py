"""A tiny random-weight Llama (and T5) with its own byte-level BPE tokenizer, built offline in
seconds. Test support, not shipped: the suite, the benchmarks and scripts/gpu_check.py import it
with tests/ on sys.path; the Docker check pipes this file into the container's python.

Tests use it through the real `from_pretrained` path instead of downloading a backbone:

    folder = build_tiny_llama(tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(folder)
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from llm_studio.paths import examples_dir

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]

# Text the tokenizer always learns from, so it works even without the demo dataset.
BUILTIN_SENTENCES = [
    "The capital of France is Paris.",
    "What is 7 plus 5? 7 plus 5 is 12.",
    "Reverse the word 'apple'. 'apple' reversed is 'elppa'.",
    "The opposite of 'hot' is 'cold'.",
    "A river is a large natural stream of fresh water.",
    "How many letters are in the word 'garden'? The word 'garden' has 6 letters.",
    "You are a helpful assistant. Answer the question briefly and correctly.",
    "<|prompt|>Hello, who are you?<|answer|>I am a small language model.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 42 100.",
    "Punctuation, quotes 'like this' and \"like that\", (brackets) - dashes; colons: done!",
]

DEMO_TEXT_COLUMNS = ("instruction", "input", "output", "system")


def tokenizer_corpus() -> Iterator[str]:
    """Sentences to train the tokenizer on: built-in ones, then the demo dataset's text."""
    yield from BUILTIN_SENTENCES
    demo = examples_dir() / "data" / "demo_train.csv"
    if not demo.is_file():
        return
    with open(demo, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for column in DEMO_TEXT_COLUMNS:
                if row.get(column):
                    yield row[column]


MAX_POSITIONS = 1024


def build_tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE `PreTrainedTokenizerFast`; any text round-trips through it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,
        model_max_length=MAX_POSITIONS,
    )


def _save_random(model_class, config, tokenizer, dest: Path, seed: int) -> Path:
    """A model of `config` with random weights drawn from `seed` (the global torch RNG is left
    as it was), saved with `tokenizer` into `dest`."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    model.eval()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def build_tiny_llama(
    dest: Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Save a random-weight `LlamaForCausalLM` and its tokenizer into `dest`; returns `dest`.

    Deterministic for a given seed; the global torch RNG is left as it was.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        # Grouped-query attention, as in SmolLM2, whenever the head count allows it.
        num_key_value_heads=num_heads // 2 if num_heads % 2 == 0 else num_heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return _save_random(LlamaForCausalLM, config, tokenizer, dest, seed)


def build_tiny_t5(
    dest: Path,
    *,
    vocab_size: int = 512,
    d_model: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Save a random-weight `T5ForConditionalGeneration` and the tiny tokenizer into `dest`.

    An encoder-decoder for sequence-to-sequence tests: gated-GELU feed-forward as in flan-t5,
    the output head tied to the embeddings and its input scaled by d_model**-0.5 (so random
    weights start near the uniform loss), and the decoder starting from the pad token.
    Deterministic for a given seed; the global torch RNG is left as it was. Returns `dest`.
    """
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = build_tiny_tokenizer(vocab_size)
    config = T5Config(  # type: ignore[call-arg]  # decoder_start_token_id goes through **kwargs
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=4 * d_model,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=num_heads,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _save_random(T5ForConditionalGeneration, config, tokenizer, dest, seed)
