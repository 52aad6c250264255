"""Data: reading files, building conversations, splitting, encoding, batching and token masking."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from llm_studio.config.sections import DatasetSection
from llm_studio.data.conversations import build_conversations
from llm_studio.data.prompt_format import Conversation, PromptFormat
from llm_studio.data.readers import DataError, read_dataframe
from llm_studio.data.splitting import MIN_VALIDATION_SAMPLES, split_and_sample
from llm_studio.data.tokenization import (
    IGNORE_INDEX,
    EncodedSample,
    collate_training,
    encode_for_training,
    mask_tokens,
)
from tests.conftest import REPO, load_cfg, pattern_rows, tiny_config

# --- reading files -----------------------------------------------------------------------------


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instruction": ["What is 7 plus 5?", "Name a colour.", "Say hi, politely."],
            "output": ["12", "red", "Hello, nice to meet you!"],
            "rating": [3, 5, 4],
        }
    )


def write_frame(df: pd.DataFrame, path):
    suffix = path.suffix
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix in (".parquet", ".pq"):
        df.to_parquet(path, index=False)
    elif suffix == ".json":
        df.to_json(path, orient="records")
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq", ".json", ".jsonl"])
def test_read_dataframe_reads_every_supported_format(tmp_path, suffix):
    expected = small_frame()
    path = write_frame(expected, tmp_path / f"train{suffix}")
    df = read_dataframe(path)
    assert list(df.columns) == ["instruction", "output", "rating"]
    assert df["instruction"].tolist() == expected["instruction"].tolist()
    assert df["output"].tolist() == expected["output"].tolist()
    assert [int(v) for v in df["rating"]] == [3, 5, 4]


def test_read_dataframe_json_with_one_record_per_line(tmp_path):
    path = tmp_path / "train.json"
    small_frame().to_json(path, orient="records", lines=True)
    assert read_dataframe(path)["output"].tolist() == small_frame()["output"].tolist()


def test_csv_keeps_na_like_text(tmp_path):
    # "NA" or "None" are answers, not missing values.
    path = tmp_path / "train.csv"
    path.write_text("instruction,output\nWhat is sodium's symbol?,NA\nSay nothing,None\n")
    assert read_dataframe(path)["output"].tolist() == ["NA", "None"]


def broken_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("instruction,output\n")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(bytes(range(256)) * 4)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"instruction,output\n\xe9t\xe9,x\n")
    unsupported = tmp_path / "train.xlsx"
    unsupported.write_bytes(b"PK\x03\x04 not really a workbook")
    empty_json = tmp_path / "empty_array.json"
    empty_json.write_text("[]")
    return {
        "empty": empty,
        "header_only": header_only,
        "corrupt": corrupt,
        "latin1": latin1,
        "unsupported": unsupported,
        "empty_json": empty_json,
    }


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("empty", "empty"),
        ("header_only", "no rows"),
        ("corrupt", "parquet"),
        ("latin1", "UTF-8"),
        ("unsupported", ".xlsx"),
        ("empty_json", "no rows"),
    ],
)
def test_unreadable_files_raise_data_error_naming_the_file(tmp_path, kind, reason):
    path = broken_files(tmp_path)[kind]
    with pytest.raises(DataError) as info:
        read_dataframe(path)
    assert path.name in str(info.value)
    assert reason in str(info.value)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="missing.csv"):
        read_dataframe(tmp_path / "missing.csv")


# --- conversations -----------------------------------------------------------------------------


def test_missing_answer_column_names_column_and_setting():
    df = pd.DataFrame({"instruction": ["a"], "response": ["b"]})
    with pytest.raises(DataError) as info:
        build_conversations(df, DatasetSection(), "train.csv")
    message = str(info.value)
    assert "'output'" in message
    assert "dataset.answer_column" in message
    assert "train.csv" in message


def test_missing_prompt_column_names_column_and_setting():
    df = pd.DataFrame({"question": ["a"], "output": ["b"]})
    with pytest.raises(DataError) as info:
        build_conversations(df, DatasetSection(), "train.csv")
    assert "'instruction'" in str(info.value)
    assert "dataset.prompt_column" in str(info.value)


def test_several_prompt_columns_are_joined_with_the_separator():
    df = pd.DataFrame(
        {"instruction": ["Translate", "Sum"], "input": ["chat", "2 3"], "output": ["cat", "5"]}
    )
    ds = DatasetSection(prompt_column=["instruction", "input"], prompt_column_separator=" || ")
    convs = build_conversations(df, ds, "train.csv")
    assert [c.prompts for c in convs] == [("Translate || chat",), ("Sum || 2 3",)]
    assert [c.answers for c in convs] == [("cat",), ("5",)]
    assert all(c.system is None for c in convs)


def test_single_prompt_column_ignores_the_separator():
    df = pd.DataFrame({"instruction": ["Hi"], "output": ["Hello"]})
    ds = DatasetSection(prompt_column_separator=" || ")
    assert build_conversations(df, ds, "t.csv")[0].prompts == ("Hi",)


def test_parent_chains_build_growing_conversations(tmp_path):
    # Rows out of order on purpose; chains follow ids, not file order.
    path = tmp_path / "chat.csv"
    pd.DataFrame(
        {
            "id": ["t3", "t1", "t2"],
            "parent_id": ["t2", None, "t1"],
            "system": ["ignored later system", "You are terse.", "also ignored"],
            "instruction": ["And 3 times 3?", "What is 1 plus 1?", "And 2 plus 2?"],
            "output": ["9", "2", "4"],
        }
    ).to_csv(path, index=False)
    ds = DatasetSection(parent_id_column="parent_id", system_column="system")
    convs = build_conversations(read_dataframe(path), ds, str(path))
    by_len = {len(c.prompts): c for c in convs}
    assert sorted(by_len) == [1, 2, 3]
    full = by_len[3]
    assert full.prompts == ("What is 1 plus 1?", "And 2 plus 2?", "And 3 times 3?")
    assert full.answers == ("2", "4", "9")
    assert by_len[2].prompts == ("What is 1 plus 1?", "And 2 plus 2?")
    assert by_len[2].answers == ("2", "4")
    for conv in convs:
        assert conv.system == "You are terse."


def test_parent_chains_with_integer_ids_from_csv(tmp_path):
    path = tmp_path / "chat.csv"
    path.write_text(
        "id,parent_id,instruction,output\n1,,What is 1 plus 1?,2\n2,1,And 2 plus 2?,4\n"
        "3,2,And 3 times 3?,9\n"
    )
    ds = DatasetSection(parent_id_column="parent_id")
    convs = build_conversations(read_dataframe(path), ds, str(path))
    assert [len(c.prompts) for c in convs] == [1, 2, 3]


def test_parent_chain_loop_raises_data_error():
    df = pd.DataFrame(
        {"id": ["a", "b"], "parent_id": ["b", "a"], "instruction": ["x", "y"], "output": ["1", "2"]}
    )
    ds = DatasetSection(parent_id_column="parent_id")
    with pytest.raises(DataError, match="loop"):
        build_conversations(df, ds, "chat.csv")


# --- split and sample --------------------------------------------------------------------------


def chain_frame(n_chains: int = 40) -> pd.DataFrame:
    rows = []
    for k in range(n_chains):
        parent = None
        for turn in range(1 + k % 3):
            rows.append(
                {
                    "id": f"c{k}t{turn}",
                    "parent_id": parent,
                    "instruction": f"chain{k}: question {turn}",
                    "output": f"answer {turn}",
                }
            )
            parent = f"c{k}t{turn}"
    # Shuffle so chains are not contiguous in the file.
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)


def split_cfg(tmp_path, train_csv, **dataset):
    data = tiny_config(tmp_path / "model", train_csv, tmp_path / "out", dataset=dataset)
    return load_cfg(data)


def chain_of(conv: Conversation) -> str:
    names = {p.split(":")[0] for p in conv.prompts}
    assert len(names) == 1, conv
    return names.pop()


def test_automatic_split_keeps_chains_on_one_side(tmp_path):
    path = tmp_path / "chat.csv"
    df = chain_frame()
    df.to_csv(path, index=False)
    cfg = split_cfg(tmp_path, path, parent_id_column="parent_id", validation_size=0.25)
    split = split_and_sample(cfg, seed=0)
    train_chains = {chain_of(c) for c in split.train}
    val_chains = {chain_of(c) for c in split.validation}
    assert train_chains.isdisjoint(val_chains)
    assert train_chains | val_chains == {f"chain{k}" for k in range(40)}
    assert len(val_chains) == 10
    assert len(split.train) + len(split.validation) == len(df)


def test_validation_size_scales_the_validation_set(tmp_path):
    path = tmp_path / "chat.csv"
    df = chain_frame(120)  # 0.1 of it is above the minimum of validation samples
    df.to_csv(path, index=False)
    counts = {}
    for size in (0.1, 0.5):
        cfg = split_cfg(tmp_path, path, parent_id_column="parent_id", validation_size=size)
        split = split_and_sample(cfg, seed=1)
        counts[size] = (len({chain_of(c) for c in split.validation}), len(split.validation))
    assert counts[0.1][0] == 12
    assert counts[0.5][0] == 60
    assert counts[0.5][1] > 2 * counts[0.1][1]
    assert 0.3 * len(df) < counts[0.5][1] < 0.7 * len(df)


def default_split(sample: float | None = None, seed: int = 0):
    """The demo chat data split with a new experiment's defaults (validation_size 0.01)."""
    from llm_studio.config.problem_types import PROBLEM_TYPES

    cfg = PROBLEM_TYPES["text_causal_language_modeling"]()
    cfg.dataset.train_dataframe = str(REPO / "examples" / "data" / "demo_train.csv")
    if sample is not None:
        cfg.dataset.data_sample = sample
    return cfg, split_and_sample(cfg, seed=seed)


def test_default_validation_size_keeps_ten_samples_even_on_a_sample():
    # 400 rows: validation_size 0.01 alone would hold out 4, and a 5 % data sample 1 (Best,
    # Worst and Random the same row). Validation keeps 10, so 5 best and 5 worst differ.
    cfg, full = default_split()
    assert cfg.dataset.validation_size == 0.01
    assert len(full.validation) == MIN_VALIDATION_SAMPLES == 10
    _, sampled = default_split(sample=0.05)
    assert len(sampled.validation) == 10
    assert set(sampled.validation) <= set(full.validation)  # sampled from the same split
    assert len(sampled.train) == round(0.05 * len(full.train))
    # Whole chains: a follow-up turn is held out only with its first turn.
    val_prompts = {c.prompts[0] for c in full.validation}
    assert not any(c.prompts[0] in val_prompts for c in full.train if len(c.prompts) > 1)


def test_small_data_holds_out_at_most_half(tmp_path):
    path = tmp_path / "small.csv"
    pattern_rows(8).to_csv(path, index=False)
    split = split_and_sample(split_cfg(tmp_path, path, validation_size=0.01), seed=0)
    assert (len(split.train), len(split.validation)) == (4, 4)


def test_split_is_reproducible_for_a_seed(tmp_path):
    path = tmp_path / "chat.csv"
    chain_frame().to_csv(path, index=False)
    cfg = split_cfg(tmp_path, path, parent_id_column="parent_id", validation_size=0.3)
    assert split_and_sample(cfg, seed=5) == split_and_sample(cfg, seed=5)


def test_custom_strategy_uses_the_validation_file(tmp_path):
    train = tmp_path / "train.csv"
    pattern_rows(20).to_csv(train, index=False)
    val = tmp_path / "val.parquet"
    pd.DataFrame(
        {"instruction": [f"held out {i}" for i in range(5)], "output": ["x"] * 5}
    ).to_parquet(val)
    cfg = split_cfg(tmp_path, train, validation_strategy="custom", validation_dataframe=str(val))
    split = split_and_sample(cfg, seed=0)
    assert len(split.train) == 20
    assert [c.prompts[0] for c in split.validation] == [f"held out {i}" for i in range(5)]
    assert not any(c.prompts[0].startswith("held out") for c in split.train)


def sample_counts(tmp_path, **dataset):
    path = tmp_path / "pattern.csv"
    pattern_rows(100).to_csv(path, index=False)
    split = split_and_sample(split_cfg(tmp_path, path, validation_size=0.2, **dataset), seed=0)
    return split


def test_data_sample_halves_train_and_validation(tmp_path):
    full = sample_counts(tmp_path)
    assert (len(full.train), len(full.validation)) == (80, 20)
    half = sample_counts(tmp_path, data_sample=0.5)
    assert (len(half.train), len(half.validation)) == (40, 10)
    # The sample is drawn from the same split: no validation row leaks into train.
    assert set(half.train) <= set(full.train)
    assert set(half.validation) <= set(full.validation)


def test_data_sample_spares_validation_when_not_chosen(tmp_path):
    half = sample_counts(tmp_path, data_sample=0.5, data_sample_choice=["Train"])
    assert (len(half.train), len(half.validation)) == (40, 20)
    only_val = sample_counts(tmp_path, data_sample=0.5, data_sample_choice=["Validation"])
    assert (len(only_val.train), len(only_val.validation)) == (80, 10)


def test_train_validation_data_adds_validation_rows_to_train(tmp_path):
    split = sample_counts(tmp_path)
    path = tmp_path / "pattern.csv"
    data = tiny_config(
        tmp_path / "model",
        path,
        tmp_path / "out",
        dataset={"validation_size": 0.2},
        training={"train_validation_data": True},
    )
    both = split_and_sample(load_cfg(data), seed=0)
    assert len(both.validation) == 20
    assert len(both.train) == 100
    assert set(both.validation) <= set(both.train)
    assert set(split.train) <= set(both.train)


# --- encoding ----------------------------------------------------------------------------------


def make_format(tokenizer, **kw) -> PromptFormat:
    values = {
        "system_start": "<|system|>",
        "prompt_start": "<|prompt|>",
        "answer_separator": "<|answer|>",
        "eos_token": tokenizer.eos_token,
        "eos_after_system": True,
        "eos_after_prompt": True,
        "eos_after_answer": True,
    }
    values.update(kw)
    return PromptFormat(**values)


ONE_TURN = Conversation("Be brief.", ("What is 7 plus 5?",), ("12",))
THREE_TURNS = Conversation(
    "You are a helpful assistant.",
    ("Name a colour.", "Another one?", "What is 7 plus 5?"),
    ("Red", "Blue", "It is 12."),
)


def labelled(sample: EncodedSample) -> list[int]:
    return [t for t in sample.labels if t != IGNORE_INDEX]


def test_format_texts_appear_in_the_encoded_sample(tiny_tokenizer):
    fmt = make_format(
        tiny_tokenizer,
        system_start="<<SYS>> ",
        prompt_start="[INST] ",
        answer_separator=" [/INST] ",
    )
    sample = encode_for_training(ONE_TURN, tiny_tokenizer, fmt, 512, True)
    assert tiny_tokenizer.decode(sample.input_ids) == (
        "<<SYS>> Be brief.</s>[INST] What is 7 plus 5?</s> [/INST] 12</s>"
    )


def test_default_format_encodes_every_turn_in_order(tiny_tokenizer):
    sample = encode_for_training(
        THREE_TURNS, tiny_tokenizer, make_format(tiny_tokenizer), 512, True
    )
    assert tiny_tokenizer.decode(sample.input_ids) == (
        "<|system|>You are a helpful assistant.</s>"
        "<|prompt|>Name a colour.</s><|answer|>Red</s>"
        "<|prompt|>Another one?</s><|answer|>Blue</s>"
        "<|prompt|>What is 7 plus 5?</s><|answer|>It is 12.</s>"
    )


@pytest.mark.parametrize("flag", ["eos_after_system", "eos_after_prompt", "eos_after_answer"])
@pytest.mark.parametrize("on", [True, False])
def test_each_eos_flag_adds_one_eos_in_its_place(tiny_tokenizer, flag, on):
    flags = {"eos_after_system": False, "eos_after_prompt": False, "eos_after_answer": False}
    flags[flag] = on
    fmt = make_format(tiny_tokenizer, **flags)
    ids = encode_for_training(ONE_TURN, tiny_tokenizer, fmt, 512, True).input_ids
    eos = tiny_tokenizer.eos_token_id
    positions = [i for i, t in enumerate(ids) if t == eos]
    if not on:
        assert positions == []
        assert (
            tiny_tokenizer.decode(ids)
            == "<|system|>Be brief.<|prompt|>What is 7 plus 5?<|answer|>12"
        )
        return
    assert len(positions) == 1
    before = tiny_tokenizer.decode(ids[: positions[0]])
    after = tiny_tokenizer.decode(ids[positions[0] + 1 :])
    expected_before = {
        "eos_after_system": "<|system|>Be brief.",
        "eos_after_prompt": "<|system|>Be brief.<|prompt|>What is 7 plus 5?",
        "eos_after_answer": "<|system|>Be brief.<|prompt|>What is 7 plus 5?<|answer|>12",
    }[flag]
    assert before == expected_before
    full = "<|system|>Be brief.<|prompt|>What is 7 plus 5?<|answer|>12"
    assert after == full[len(expected_before) :]


def test_no_system_text_means_no_system_start(tiny_tokenizer):
    conv = Conversation(None, ("Hi",), ("Hello",))
    ids = encode_for_training(
        conv, tiny_tokenizer, make_format(tiny_tokenizer), 512, True
    ).input_ids
    assert tiny_tokenizer.decode(ids) == "<|prompt|>Hi</s><|answer|>Hello</s>"


def test_masked_prompt_labels_cover_only_the_answer(tiny_tokenizer):
    sample = encode_for_training(ONE_TURN, tiny_tokenizer, make_format(tiny_tokenizer), 512, True)
    assert tiny_tokenizer.decode(labelled(sample)) == "12</s>"
    # Labelled tokens are the tail of the sample, aligned with the input ids.
    n = len(labelled(sample))
    assert sample.labels[-n:] == sample.input_ids[-n:]
    assert all(t == IGNORE_INDEX for t in sample.labels[:-n])
    assert sample.labels[-1] == tiny_tokenizer.eos_token_id


def test_masked_prompt_labels_cover_every_answer_of_a_chain(tiny_tokenizer):
    fmt = make_format(tiny_tokenizer)
    sample = encode_for_training(THREE_TURNS, tiny_tokenizer, fmt, 512, True)
    assert tiny_tokenizer.decode(labelled(sample)) == "Red</s>Blue</s>It is 12.</s>"


def test_unmasked_labels_cover_every_token(tiny_tokenizer):
    sample = encode_for_training(ONE_TURN, tiny_tokenizer, make_format(tiny_tokenizer), 512, False)
    assert sample.labels == sample.input_ids


def test_too_long_sample_keeps_the_answer_and_cuts_the_prompt_on_the_left(tiny_tokenizer):
    fmt = make_format(tiny_tokenizer)
    long_prompt = " ".join(f"word{i}" for i in range(40)) + " What is 7 plus 5?"
    conv = Conversation("Be brief.", (long_prompt,), ("It is 12.",))
    full = encode_for_training(conv, tiny_tokenizer, fmt, 10_000, True)
    assert len(full.input_ids) > 40
    cut = encode_for_training(conv, tiny_tokenizer, fmt, 24, True)
    assert len(cut.input_ids) == 24
    assert cut.input_ids == full.input_ids[-24:]
    assert cut.labels == full.labels[-24:]
    assert cut.labels[-1] == tiny_tokenizer.eos_token_id
    text = tiny_tokenizer.decode(cut.input_ids)
    assert text.endswith("What is 7 plus 5?</s><|answer|>It is 12.</s>")
    assert "<|system|>" not in text
    assert tiny_tokenizer.decode(labelled(cut)) == "It is 12.</s>"


def test_very_long_answer_still_keeps_some_prompt(tiny_tokenizer):
    fmt = make_format(tiny_tokenizer)
    answer = " ".join(["red blue green"] * 60)
    conv = Conversation(None, ("List colours.",), (answer,))
    cut = encode_for_training(conv, tiny_tokenizer, fmt, 32, True)
    assert len(cut.input_ids) == 32
    assert len(cut.labels) == 32
    prompt_tokens = [t for t in cut.labels if t == IGNORE_INDEX]
    assert len(prompt_tokens) >= 8
    text = tiny_tokenizer.decode(cut.input_ids)
    assert "<|answer|>red blue" in text
    assert "colours." in text


# --- batching ----------------------------------------------------------------------------------


def samples_of_lengths(*lengths: int) -> list[EncodedSample]:
    out = []
    for k, n in enumerate(lengths):
        ids = [100 * (k + 1) + i for i in range(n)]
        labels = [IGNORE_INDEX] * (n // 2) + ids[n // 2 :]
        out.append(EncodedSample(ids, labels))
    return out


PAD = 0


def check_padding(batch, samples, width):
    assert batch["input_ids"].shape == (len(samples), width)
    for row, s in enumerate(samples):
        kept = min(len(s.input_ids), width)
        assert batch["input_ids"][row, :kept].tolist() == s.input_ids[-kept:]
        assert batch["labels"][row, :kept].tolist() == s.labels[-kept:]
        assert batch["attention_mask"][row, :kept].tolist() == [1] * kept
        assert batch["input_ids"][row, kept:].tolist() == [PAD] * (width - kept)
        assert batch["attention_mask"][row, kept:].tolist() == [0] * (width - kept)
        assert batch["labels"][row, kept:].tolist() == [IGNORE_INDEX] * (width - kept)


def test_quantile_one_pads_to_the_longest_sample():
    samples = samples_of_lengths(3, 9, 5)
    batch = collate_training(samples, PAD, padding_quantile=1.0, max_length=16)
    check_padding(batch, samples, 9)


def test_quantile_half_cuts_to_the_median_keeping_the_end():
    samples = samples_of_lengths(3, 9, 5)
    batch = collate_training(samples, PAD, padding_quantile=0.5, max_length=16)
    check_padding(batch, samples, 5)
    # The 9-token sample lost its first 4 tokens, not its last ones.
    assert batch["input_ids"][1].tolist() == samples[1].input_ids[4:]
    assert batch["input_ids"][1, -1].item() == samples[1].input_ids[-1]


def test_quantile_zero_pads_to_max_length():
    samples = samples_of_lengths(3, 9, 5)
    batch = collate_training(samples, PAD, padding_quantile=0.0, max_length=16)
    check_padding(batch, samples, 16)


# --- token masking -----------------------------------------------------------------------------


def test_mask_tokens_replaces_about_half_of_the_real_tokens():
    samples = samples_of_lengths(120, 40, 200, 90)
    batch = collate_training(samples, PAD, padding_quantile=1.0, max_length=256)
    mask_id = 3
    out = mask_tokens(batch, 0.5, mask_id, torch.Generator().manual_seed(0))
    real = batch["attention_mask"].bool()
    changed = out["input_ids"] != batch["input_ids"]
    assert (out["input_ids"][changed] == mask_id).all()
    share = changed[real].float().mean().item()
    assert 0.4 < share < 0.6
    assert not changed[~real].any()
    assert torch.equal(out["labels"], batch["labels"])
    assert torch.equal(out["attention_mask"], batch["attention_mask"])


def test_mask_tokens_with_zero_probability_changes_nothing():
    samples = samples_of_lengths(12, 7)
    batch = collate_training(samples, PAD, padding_quantile=1.0, max_length=16)
    before = {k: v.clone() for k, v in batch.items()}
    out = mask_tokens(batch, 0.0, 3, torch.Generator().manual_seed(0))
    for key in before:
        assert torch.equal(out[key], before[key])
