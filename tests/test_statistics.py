"""Dataset statistics (View datasets: Train data statistics, Summary) and the chat-bubble samples
(Sample train visualization): hand-checked numbers, the JSON cache, a million rows, chains."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from llm_studio.config.classification import ClassificationDatasetSection
from llm_studio.config.dpo import DPODatasetSection
from llm_studio.config.sections import DatasetSection
from llm_studio.data import statistics
from llm_studio.data.readers import DataError
from llm_studio.data.statistics import (
    DatasetStatistics,
    count_rows,
    dataset_statistics,
    frame_statistics,
    histogram,
    summary,
    word_counts,
)
from llm_studio.data.visualization import sample_conversations
from tests.conftest import REPO


def chat_cfg(**kw) -> DatasetSection:
    kw.setdefault("prompt_column", ["instruction"])
    kw.setdefault("answer_column", "output")
    return DatasetSection(**kw)


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instruction": ["What is 7 plus 5?", "Name a colour.", None, "Say  hi,\tpolitely. "],
            "output": ["12", "red", "blue sky", "Hello, nice to meet you!"],
            "rating": [3.0, 5.0, None, 4.0],
        }
    )


# --- numbers on a small frame -------------------------------------------------------------------


def test_small_frame_statistics_are_hand_checked(tmp_path):
    path = tmp_path / "train.csv"
    small_frame().to_csv(path, index=False)
    stats = dataset_statistics(path, chat_cfg(), tmp_path / "cache")

    assert stats.rows == 4 and not stats.cached and stats.warnings == []
    assert stats.columns_used == {"prompt_column": ["instruction"], "answer_column": ["output"]}

    instruction = stats.column("instruction")
    assert (instruction.count, instruction.missing, instruction.unique) == (3, 1, 3)
    # 17, 14 and 19 characters; 5, 3 and 3 words (missing values are left out)
    assert instruction.text.chars_min == 14 and instruction.text.chars_max == 19
    assert instruction.text.chars_mean == pytest.approx((17 + 14 + 19) / 3)
    assert (instruction.text.words_min, instruction.text.words_max) == (3, 5)
    assert instruction.text.words_mean == pytest.approx(11 / 3)
    assert instruction.min is None  # text columns have no numeric summary

    output = stats.column("output")
    assert (output.count, output.missing, output.unique) == (4, 0, 4)
    assert (output.text.words_min, output.text.words_max) == (1, 5)
    assert (output.text.chars_min, output.text.chars_max) == (2, 24)

    rating = stats.column("rating")
    assert (rating.count, rating.missing, rating.unique) == (3, 1, 3)
    assert (rating.min, rating.max, rating.mean) == (3.0, 5.0, 4.0)
    assert rating.std == pytest.approx(1.0)
    assert rating.text is None and rating.dtype == "float64"

    prompt = stats.length("prompt")
    # per row, a missing prompt counting 0 words as it is empty text in training
    assert (prompt.rows, prompt.min, prompt.max) == (4, 0, 5)
    assert prompt.mean == pytest.approx((5 + 3 + 0 + 3) / 4)
    answer = stats.length("answer")
    assert (answer.min, answer.max, answer.mean) == (1, 5, pytest.approx(9 / 4))
    total = stats.length("total")
    assert (total.min, total.max) == (2, 8)  # "blue sky" alone; the last row's 3 + 5
    for dist in stats.lengths:
        assert sum(dist.histogram.counts) == stats.rows
        assert len(dist.histogram.edges) == len(dist.histogram.counts) + 1 <= 20 + 1
        assert dist.histogram.edges[0] == dist.min and dist.histogram.edges[-1] == dist.max + 1
    assert stats.length("prompt", "tokens") is None  # no tokenizer given


def test_several_prompt_columns_system_and_missing_columns():
    df = pd.DataFrame(
        {
            "system": ["Be brief.", None],
            "q": ["one two", "three"],
            "ctx": ["a b c", None],
            "output": ["x", "y z"],
        }
    )
    cfg = chat_cfg(
        prompt_column=["q", "ctx"], system_column="system", prompt_column_separator=" | "
    )
    stats = frame_statistics(df, cfg)
    # "one two | a b c" and "three | " (the separator counts as a word, as it is in the text)
    assert [stats.length("prompt").min, stats.length("prompt").max] == [2, 6]
    assert stats.length("system").mean == 1.0
    assert stats.length("total").max == 2 + 6 + 1

    missing = frame_statistics(df, chat_cfg(answer_column="nope"))
    assert missing.length("answer") is None and missing.length("prompt") is None
    assert any("answer_column" in w for w in missing.warnings)


def test_word_counts_match_python_split(monkeypatch):
    texts = [
        "",
        " ",
        "one",
        "  lead and trail  ",
        "tabs\tand\nnew\r\nlines\x0bvt\x0cff",
        "héllo wörld 日本 語",
        None,
        "a" * 50 + " b",
        "x y",
        # Unicode whitespace separates words too, as in str.split: no-break space, em space,
        # ideographic space, next line, the file/group separators; a zero-width space does not.
        "no\xa0break em\u2003space",
        "\u3000ideographic\u3000 nel\x85line fs\x1cgs\x1dend",
        "zero\u200bwidth",
    ] * 7
    expected = [0 if t is None else len(t.split()) for t in texts]
    arr = pa.array(texts, type=pa.string())
    assert word_counts(arr).tolist() == expected
    # a slice (non-zero offset) and tiny row chunks, so the text is counted piece by piece
    monkeypatch.setattr(statistics.measures, "_WORD_ROWS", 5)
    assert word_counts(arr).tolist() == expected
    assert word_counts(arr.slice(3, 20)).tolist() == expected[3:23]
    assert word_counts(pd.Series(texts, dtype=object)).tolist() == expected
    assert word_counts(pa.array([], type=pa.string())).tolist() == []


def test_odd_columns_and_json_round_trip():
    df = pd.DataFrame(
        {
            "instruction": ["a", "b", "c"],
            "output": ["x", "y", "z"],
            "mixed": [1, "two", None],
            "nested": [[1, 2], {"k": 1}, None],
            "flag": [True, False, True],
            "when": pd.to_datetime(["2024-01-01", None, "2024-01-02"]),
            "const": [7, 7, 7],
            5: ["not", "a", "string name"],
        }
    )
    stats = frame_statistics(df, chat_cfg())
    assert (stats.column("mixed").count, stats.column("mixed").missing) == (2, 1)
    assert stats.column("nested").unique == 2
    assert stats.column("flag").unique == 2 and stats.column("flag").mean is None
    assert stats.column("when").missing == 1
    const = stats.column("const")
    assert (const.min, const.max, const.std) == (7.0, 7.0, 0.0)
    assert stats.column("5").text.words_max == 2
    back = DatasetStatistics.from_dict(json.loads(stats.to_json()))
    assert back == stats


def test_histogram_bins_are_whole_lengths_and_constant_values_fill_one_bar():
    h = histogram(np.array([0, 1, 2, 3, 10]), bins=5)
    # 0..10 is 11 lengths: bins of 3, the last one ending at the largest length
    assert h.counts == [3, 1, 0, 1] and h.edges == [0.0, 3.0, 6.0, 9.0, 11.0]
    assert h.bars() == [("0–2", 3), ("3–5", 1), ("6–8", 0), ("9–10", 1)]
    # Few distinct lengths: one bar per length, none between two whole numbers.
    assert histogram(np.array([2, 4, 4, 6])).bars() == [
        ("2", 1), ("3", 0), ("4", 2), ("5", 0), ("6", 1)
    ]  # fmt: skip
    flat = histogram(np.array([4, 4, 4]), bins=3)
    assert flat.bars() == [("4", 3)]
    assert histogram(np.array([], dtype=np.int64)).bars() == [("0", 0)]


def test_constant_and_empty_columns_give_one_bar_and_no_nan():
    df = pd.DataFrame(
        {
            "instruction": ["Say hello please"] * 30,  # always 3 words
            "output": [None] * 30,  # an empty answer column
            "notes": [np.nan] * 30,
        }
    )
    stats = frame_statistics(df, chat_cfg())
    assert stats.length("prompt").histogram.bars() == [("3", 30)]
    assert stats.length("answer").histogram.bars() == [("0", 30)]
    stats.to_json()  # written with allow_nan=False: a nan anywhere would raise


# --- the cache --------------------------------------------------------------------------------------


def test_second_call_reads_the_cache(tmp_path, monkeypatch):
    path = tmp_path / "train.parquet"
    small_frame().to_parquet(path, index=False)
    cache = tmp_path / "cache"
    first = dataset_statistics(path, chat_cfg(), cache)
    files = list(cache.glob("stats-*.json"))
    assert len(files) == 1 and not first.cached
    assert not list(cache.glob(".*.tmp"))  # written atomically, no leftovers

    def no_compute(*args, **kwargs):
        raise AssertionError("computed again instead of reading the cache")

    monkeypatch.setattr(statistics.cache, "frame_statistics", no_compute)
    monkeypatch.setattr(statistics.cache, "read_dataframe", no_compute)
    second = dataset_statistics(path, chat_cfg(), cache)
    assert second.cached
    assert second.to_dict() == first.to_dict()


def test_cache_is_invalidated_when_the_file_or_the_settings_change(tmp_path):
    path = tmp_path / "train.csv"
    small_frame().to_csv(path, index=False)
    cache = tmp_path / "cache"
    assert dataset_statistics(path, chat_cfg(), cache).rows == 4
    assert dataset_statistics(path, chat_cfg(), cache).cached

    bigger = pd.concat([small_frame()] * 3)
    bigger.to_csv(path, index=False)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    changed = dataset_statistics(path, chat_cfg(), cache)
    assert not changed.cached and changed.rows == 12
    assert len(list(cache.glob("stats-*.json"))) == 1  # replaced, not piled up
    assert dataset_statistics(path, chat_cfg(), cache).cached

    other = dataset_statistics(path, chat_cfg(answer_column="instruction"), cache)
    assert not other.cached and other.columns_used["answer_column"] == ["instruction"]

    # a corrupt cache entry is computed again
    for f in cache.glob("stats-*.json"):
        f.write_text("{not json")
    assert not dataset_statistics(path, chat_cfg(), cache).cached


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        dataset_statistics(tmp_path / "nope.csv", chat_cfg(), tmp_path)


# --- a million rows -------------------------------------------------------------------------------


def test_one_million_rows_two_text_columns():
    rng = np.random.default_rng(0)
    vocab = np.array(["alpha", "be", "c", "délta", "echo,", "fox.", "golf", "hotel\n", "in", "j"])

    def texts(lo, hi) -> pa.Array:
        pool = [" ".join(rng.choice(vocab, rng.integers(lo, hi))) for _ in range(2000)]
        return pa.array(pool).take(pa.array(rng.integers(0, len(pool), 1_000_000)))

    # arrow-backed string columns, as read_dataframe gives them
    df = pa.table({"instruction": texts(3, 40), "output": texts(5, 100)}).to_pandas()
    started = time.perf_counter()
    stats = frame_statistics(df, chat_cfg())
    elapsed = time.perf_counter() - started
    megabytes = sum(pa.array(df[c]).nbytes for c in df.columns) / 1e6
    print(f"\n1,000,000 rows, {megabytes:.0f} MB of text: statistics in {elapsed:.2f} s")
    assert stats.rows == 1_000_000
    for dist in stats.lengths:
        assert sum(dist.histogram.counts) == 1_000_000
    assert stats.length("prompt").min == 3 and stats.length("prompt").max == 39
    sample = df["output"].iloc[:1000].map(lambda t: len(t.split())).to_numpy()
    assert math.isclose(stats.length("answer").mean, 52, rel_tol=0.05)
    assert sample.min() >= stats.length("answer").min


# --- tokens ---------------------------------------------------------------------------------------


def test_token_lengths_with_a_tokenizer_folder(tmp_path):
    from tiny_model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tok_dir = tmp_path / "tok"
    tokenizer.save_pretrained(tok_dir)
    df = small_frame()
    path = tmp_path / "train.csv"
    df.to_csv(path, index=False)

    stats = dataset_statistics(path, chat_cfg(), tmp_path / "cache", tokenizer=tok_dir)
    expected = [
        len(tokenizer("" if pd.isna(t) else t, add_special_tokens=False)["input_ids"])
        for t in df["output"]
    ]
    answer = stats.length("answer", "tokens")
    assert (answer.min, answer.max, answer.rows) == (min(expected), max(expected), 4)
    assert answer.mean == pytest.approx(np.mean(expected))
    assert stats.length("prompt", "tokens").min == 0
    assert stats.tokenizer == str(tok_dir)
    assert dataset_statistics(path, chat_cfg(), tmp_path / "cache", tokenizer=tok_dir).cached
    # a sample of rows when the frame is larger than token_rows
    sampled = frame_statistics(pd.concat([df] * 10), chat_cfg(), tokenizer, token_rows=7)
    assert sampled.length("answer", "tokens").rows == 7
    assert sampled.length("answer", "words").rows == 40


def test_modules_do_not_import_torch_or_transformers():
    code = (
        "import sys, llm_studio.data.statistics, llm_studio.data.visualization; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- Summary tab ----------------------------------------------------------------------------------


def test_summary_names_rows_and_labels(tmp_path):
    train, valid = tmp_path / "train.csv", tmp_path / "valid.parquet"
    small_frame().to_csv(train, index=False)
    small_frame().iloc[:2].to_parquet(valid, index=False)
    cfg = chat_cfg(
        train_dataframe=str(train), validation_dataframe=str(valid), validation_strategy="custom"
    )
    s = summary("my data", "text_causal_language_modeling", cfg, cache_dir=tmp_path / "c")
    assert (s.train_rows, s.validation_rows) == (4, 2)
    assert dict(s.table()) == {
        "Name": "my data",
        "Problem type": "Causal Language Modeling",
        "Train dataframe": str(train),
        "Train rows": "4",
        "Validation dataframe": str(valid),
        "Validation rows": "2",
        "Labels": "output",
    }
    assert count_rows(train, tmp_path / "c") == 4  # cached by then
    assert list((tmp_path / "c").glob("rows-*.json"))

    labels = ClassificationDatasetSection(train_dataframe=str(tmp_path / "gone.csv"))
    s = summary("cls", "text_causal_classification_modeling", labels, train_rows=10)
    assert (s.train_rows, s.validation_dataframe, s.labels) == (10, None, ["label"])
    assert summary("cls", "text_causal_classification_modeling", labels).train_rows is None


# --- Sample train visualization -----------------------------------------------------------------


def chain_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "parent_id": [None, 1, 2, None],
            "system": ["You are terse.", "ignored (not the first turn)", None, None],
            "instruction": ["Hi", "What is 2+2?", "And 3+3?", "Alone"],
            "output": ["Hello.", "4", "6", "Yes."],
            "rejected_response": ["Go away.", "5", "7", "No."],
        }
    )


def test_visualization_follows_a_three_turn_chain():
    cfg = chat_cfg(parent_id_column="parent_id", system_column="system")
    samples = sample_conversations(chain_frame(), cfg, n=10, seed=0)
    assert len(samples) == 2  # the ends of conversations only: row 3 (chain 1-2-3) and row 4
    by_end = {s[-1]["row"]: s for s in samples}
    assert [(b["role"], b["text"]) for b in by_end[2]] == [
        ("system", "You are terse."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "What is 2+2?"),
        ("assistant", "4"),
        ("user", "And 3+3?"),
        ("assistant", "6"),
    ]
    assert [b["row"] for b in by_end[2]] == [0, 0, 0, 1, 1, 2, 2]
    assert [(b["role"], b["text"]) for b in by_end[3]] == [("user", "Alone"), ("assistant", "Yes.")]
    again = sample_conversations(chain_frame(), cfg, n=1, seed=3)
    assert again == sample_conversations(chain_frame(), cfg, n=1, seed=3)
    assert len(again) == 1


def test_visualization_without_chains_dpo_and_labels():
    df = chain_frame()
    plain = sample_conversations(df, chat_cfg(), n=2, seed=1)
    assert len(plain) == 2 and all(len(s) == 2 for s in plain)  # every row is its own sample

    dpo = DPODatasetSection(
        prompt_column=["instruction"], answer_column="output", parent_id_column="parent_id"
    )
    samples = {s[-1]["row"]: s for s in sample_conversations(df, dpo, n=5)}
    chain = samples[2]
    assert [b["text"] for b in chain[-3:]] == ["And 3+3?", "6", "7"]
    assert chain[-1] == {"role": "assistant", "text": "7", "row": 2, "rejected": True}
    assert not any(b.get("rejected") for b in chain[:-1])

    df["rejected_prompt"] = ["Hi", "x", "And 4+4?", "Alone"]
    dpo.rejected_prompt_column = "rejected_prompt"
    samples = {s[-1]["row"]: s for s in sample_conversations(df, dpo, n=5)}
    assert samples[2][-2] == {"role": "user", "text": "And 4+4?", "row": 2, "rejected": True}
    assert not samples[3][-2].get("rejected")  # same prompt: not repeated

    labels = pd.DataFrame({"instruction": ["good", "bad"], "label": [1, 0]})
    cls = ClassificationDatasetSection(prompt_column=["instruction"])
    got = sorted(sample_conversations(labels, cls, n=5), key=lambda s: s[0]["row"])
    assert [[(b["role"], b["text"]) for b in s] for s in got] == [
        [("user", "good"), ("assistant", "1")],
        [("user", "bad"), ("assistant", "0")],
    ]


def test_visualization_reports_bad_data():
    df = chain_frame()
    cfg = chat_cfg(parent_id_column="parent_id")
    with pytest.raises(DataError, match="appears twice"):
        sample_conversations(df.assign(id=[1, 1, 3, 4]), cfg, n=2)
    with pytest.raises(DataError, match="loops back"):
        sample_conversations(df.assign(parent_id=[3, 1, 2, 3]), cfg, n=1, seed=0)
    with pytest.raises(DataError, match="rejected_response"):
        sample_conversations(df.drop(columns="rejected_response"), DPODatasetSection(), n=1)
