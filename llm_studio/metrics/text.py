"""Text-generation metrics, looked up by the name the config uses.

Each metric takes the validation rows and returns one score per row; the experiment's value is
their mean. `higher_is_better` tells checkpoint selection and the UI which way is good.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import sacrebleu


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    needs_generation: bool
    score: Callable[..., list[float]]


def bleu_scores(predictions: list[str], targets: list[str], **_) -> list[float]:
    return [
        sacrebleu.sentence_bleu(pred, [target]).score for pred, target in zip(predictions, targets)
    ]


def perplexity_scores(sample_losses: list[float], **_) -> list[float]:
    # Per-row perplexity of the target answer; capped so one diverging row stays finite.
    return [math.exp(min(loss, 50.0)) for loss in sample_losses]


METRICS: dict[str, Metric] = {
    "BLEU": Metric("BLEU", higher_is_better=True, needs_generation=True, score=bleu_scores),
    "Perplexity": Metric(
        "Perplexity", higher_is_better=False, needs_generation=False, score=perplexity_scores
    ),
}
