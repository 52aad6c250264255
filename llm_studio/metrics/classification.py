"""Metrics of the label problem types (causal classification and regression).

Unlike the text metrics, some of these (AUC) exist only over a whole validation set, so each
`LabelMetric` carries `value(targets, outputs) -> float` for the experiment's number; `score`
still gives one value per row where one exists (NaN for AUC), for the predictions CSV.

Arrays:
- single-label classification: targets (n,) class ids, outputs (n, classes) probabilities;
- multi-label classification: targets (n, labels) of 0/1, outputs (n, labels) probabilities;
- regression: targets and outputs (n, targets) floats.

This module registers its metrics in `llm_studio.metrics.text.METRICS` when imported (text.py
imports it at its end), so `resolve_metric` finds them by the config's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from llm_studio.config.registries import CLASSIFICATION_METRICS, REGRESSION_METRICS
from llm_studio.metrics.text import METRICS, Metric


def _finite(outputs: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(outputs)))


def _as_arrays(targets, outputs) -> tuple[np.ndarray, np.ndarray]:
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1:
        outputs = outputs[:, None]
    return np.asarray(targets), outputs


# --- per row ---
def accuracy_rows(targets, outputs, **_) -> list[float]:
    """Single-label: the likeliest class is right. Multi-label: every label is right at 0.5
    (sklearn's subset accuracy)."""
    y, p = _as_arrays(targets, outputs)
    right = p.argmax(axis=1) == y if y.ndim == 1 else np.all((p > 0.5) == (y > 0.5), axis=1)
    return right.astype(float).tolist()


def logloss_rows(targets, outputs, **_) -> list[float]:
    """Single-label: -log p(true class). Multi-label: the mean binary log loss of the labels.
    Probabilities are clipped to [eps, 1 - eps] like sklearn's log_loss."""
    y, p = _as_arrays(targets, outputs)
    eps = np.finfo(np.float64).eps
    p = np.clip(p, eps, 1 - eps)
    if y.ndim == 1:
        return (-np.log(p[np.arange(len(y)), y.astype(int)])).tolist()
    y = y.astype(float)
    return (-(y * np.log(p) + (1 - y) * np.log(1 - p))).mean(axis=1).tolist()


def squared_error_rows(targets, outputs, **_) -> list[float]:
    y, p = _as_arrays(targets, outputs)
    return ((p - y.reshape(p.shape)) ** 2).mean(axis=1).tolist()


def absolute_error_rows(targets, outputs, **_) -> list[float]:
    y, p = _as_arrays(targets, outputs)
    return np.abs(p - y.reshape(p.shape)).mean(axis=1).tolist()


def no_rows(targets, outputs, **_) -> list[float]:
    return [float("nan")] * len(targets)


# --- whole set ---
def auc(targets, outputs) -> float:
    """ROC AUC with sklearn: binary on the class-1 probability; several classes one-vs-rest and
    multi-label per label, macro-averaged over the classes/labels that have both a positive and
    a negative row (NaN when none has)."""
    from sklearn.metrics import roc_auc_score

    y, p = _as_arrays(targets, outputs)
    if not _finite(p):
        return float("nan")
    if y.ndim == 1:
        if p.shape[1] == 2:
            columns = [(y == 1, p[:, 1])]
        else:
            columns = [(y == k, p[:, k]) for k in range(p.shape[1])]
    else:
        columns = [(y[:, k] > 0.5, p[:, k]) for k in range(p.shape[1])]
    scores = [roc_auc_score(t, s) for t, s in columns if 0 < t.sum() < len(t)]
    return float(np.mean(scores)) if scores else float("nan")


def _mean_of(rows: Callable[..., list[float]]) -> Callable[..., float]:
    def value(targets, outputs) -> float:
        _, p = _as_arrays(targets, outputs)
        if len(p) == 0 or not _finite(p):
            return float("nan")
        return float(np.mean(rows(targets, outputs)))

    return value


@dataclass(frozen=True)
class LabelMetric(Metric):
    value: Callable[[np.ndarray, np.ndarray], float] | None = None


LABEL_METRICS: dict[str, LabelMetric] = (CLASSIFICATION_METRICS + REGRESSION_METRICS).implement(
    {
        "AUC": LabelMetric("AUC", True, False, no_rows, auc),
        "Accuracy": LabelMetric("Accuracy", True, False, accuracy_rows, _mean_of(accuracy_rows)),
        "LogLoss": LabelMetric("LogLoss", False, False, logloss_rows, _mean_of(logloss_rows)),
        "MSE": LabelMetric("MSE", False, False, squared_error_rows, _mean_of(squared_error_rows)),
        "MAE": LabelMetric("MAE", False, False, absolute_error_rows, _mean_of(absolute_error_rows)),
    }
)

METRICS.update(LABEL_METRICS)
