"""The one `Collate`: each task's batch layout, and validation's "pad to the longest row"."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from llm_studio.data.preferences import PAIR_SIDES, EncodedPair
from llm_studio.data.tokenization import IGNORE_INDEX, Collate, EncodedSample

PAD = 0


def sample(length: int, first: int) -> EncodedSample:
    ids = list(range(first, first + length))
    return EncodedSample(ids, [IGNORE_INDEX] * (length // 2) + ids[length // 2 :])


@dataclass
class Labelled(EncodedSample):
    target: tuple[float, ...]


LAYOUTS = {
    "causal": {},
    "seq2seq": {"labels": "decoder"},
    "classification": {"labels": "none", "targets": True},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_padded_to_longest_keeps_every_row_whole_whatever_the_training_quantile(layout):
    samples = [
        Labelled(s.input_ids, s.labels, (1.0,)) for s in map(sample, (3, 9, 5), (10, 20, 40))
    ]
    training = Collate(PAD, padding_quantile=0.5, max_length=16, **LAYOUTS[layout])
    assert training(samples)["input_ids"].shape[1] == 5  # the median: the long row is cut
    batch = training.padded_to_longest()(samples)
    assert batch["input_ids"].shape[1] == 9
    for row, s in enumerate(samples):
        assert batch["input_ids"][row, : len(s.input_ids)].tolist() == s.input_ids
        assert batch["attention_mask"][row].sum().item() == len(s.input_ids)
    assert ("labels" in batch) == (layout != "classification")
    assert ("targets" in batch) == (layout == "classification")


def test_pair_sides_share_one_width_and_come_back_under_their_names():
    pairs = [EncodedPair(sample(4, 10), sample(7, 30)), EncodedPair(sample(6, 50), sample(2, 70))]
    batch = Collate(PAD, 0.5, 16, sides=PAIR_SIDES).padded_to_longest()(pairs)
    assert sorted(batch) == sorted(
        f"{side}_{key}" for side in PAIR_SIDES for key in ("input_ids", "attention_mask", "labels")
    )
    for side in PAIR_SIDES:
        assert batch[f"{side}_input_ids"].shape == (2, 7)  # the longest row of either side
        for row, pair in enumerate(pairs):
            s = getattr(pair, side)
            assert batch[f"{side}_input_ids"][row, : len(s.input_ids)].tolist() == s.input_ids
            assert batch[f"{side}_labels"][row, len(s.labels) :].tolist() == [IGNORE_INDEX] * (
                7 - len(s.labels)
            )


def test_decoder_labels_keep_the_whole_answer_when_the_quantile_cuts_the_input():
    samples = [
        EncodedSample([1] * 8, [5, 6, 7, 8]),
        EncodedSample([2] * 2, [9]),
        EncodedSample([3] * 3, [10]),
    ]
    batch = Collate(PAD, padding_quantile=0.5, max_length=16, labels="decoder")(samples)
    assert batch["input_ids"].shape == (3, 3)  # the inputs are cut to the median length
    assert batch["labels"].tolist() == [
        [5, 6, 7, 8],
        [9] + [IGNORE_INDEX] * 3,
        [10] + [IGNORE_INDEX] * 3,
    ]
