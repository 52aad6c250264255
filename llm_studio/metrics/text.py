"""Text-generation metrics, looked up by the name the config uses.

Each metric takes the validation rows as keyword arguments (predictions, targets, prompts,
sample_losses, prediction_cfg) and returns one score per row; the experiment's value is their mean. `higher_is_better` tells checkpoint selection and the UI which way is good.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import sacrebleu

from llm_studio.config.base import PredictionSettings
from llm_studio.config.registries import TEXT_METRICS

log = logging.getLogger("llm_studio")


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    needs_generation: bool
    score: Callable[..., list[float]]

    def improves(self, value: float, best: float | None) -> bool:
        """Whether `value` beats `best`; a NaN (nothing could be scored) never does."""
        if math.isnan(value):
            return False
        if best is None or math.isnan(best):
            return True
        return value > best if self.higher_is_better else value < best


def bleu_scores(predictions: list[str], targets: list[str], **_) -> list[float]:
    return [
        sacrebleu.sentence_bleu(pred, [target]).score
        for pred, target in zip(predictions, targets, strict=True)
    ]


def perplexity_scores(sample_losses: list[float], **_) -> list[float]:
    # Per-row perplexity of the target answer; capped so one diverging row stays finite.
    return [math.exp(min(loss, 50.0)) for loss in sample_losses]


def _judge_scores(**rows) -> list[float]:
    from llm_studio.metrics.judge import judge_scores

    return judge_scores(**rows)


METRICS: dict[str, Metric] = TEXT_METRICS.implement(
    {
        "BLEU": Metric("BLEU", higher_is_better=True, needs_generation=True, score=bleu_scores),
        "Perplexity": Metric(
            "Perplexity", higher_is_better=False, needs_generation=False, score=perplexity_scores
        ),
        "GPT": Metric("GPT", higher_is_better=True, needs_generation=True, score=_judge_scores),
    }
)


def resolve_metric(prediction_cfg: PredictionSettings) -> Metric:
    """The metric a run uses: GPT falls back to BLEU, with a log line, when no judge is reachable."""
    if prediction_cfg.metric == "GPT":
        from llm_studio.metrics.judge import judge_unavailable_reason

        reason = judge_unavailable_reason()
        if reason:
            log.warning("metric GPT: %s; using BLEU instead", reason)
            return METRICS["BLEU"]
    return METRICS[prediction_cfg.metric]


# The label problem types' metrics (AUC, Accuracy, LogLoss, MSE, MAE) register themselves in
# METRICS; imported last, so that module finds Metric and METRICS whichever is imported first.
import llm_studio.metrics.classification  # noqa: E402, F401, I001
