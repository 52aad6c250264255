"""The names a setting may take where each name picks an implementation: the one list of each.

`training.optimizer: AdamW` picks an optimizer that `training/optimizers.py` builds; the setting
offers the names declared here (`setting(..., choices=OPTIMIZERS.names)`), and training builds its
table with `OPTIMIZERS.implement({...})`, which refuses, when that module is imported, a name not
declared here or a declared name left without an implementation. So a name is added in one place
(here) and cannot drift from what training builds; the config layer and the UI offer and check
the names without importing torch or training (the layering of docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from llm_studio.config.settings import ConfigError

T = TypeVar("T")


class Implementations(dict[str, T]):
    """A registry's name -> implementation table; an unknown name is a ConfigError naming the
    setting and the names it takes, not a bare KeyError."""

    def __init__(self, setting: str, table: Mapping[str, T]) -> None:
        super().__init__(table)
        self.setting = setting

    def __missing__(self, name: str) -> T:
        raise ConfigError(f"{self.setting}: got {name!r}, expected one of {list(self)}")


@dataclass(frozen=True)
class Registry:
    """The names `setting` may take, in the order the form and docs/settings.md show them."""

    setting: str
    names: tuple[str, ...]

    def __add__(self, other: Registry) -> Registry:
        """One table for two settings of the same key (classification's and regression's losses)."""
        return Registry(self.setting, self.names + other.names)

    def implement(self, table: Mapping[str, T]) -> Implementations[T]:
        """`table` in the declared order; raises unless it implements exactly the declared names."""
        missing = [name for name in self.names if name not in table]
        unknown = [name for name in table if name not in self.names]
        if missing or unknown:
            raise TypeError(
                f"{self.setting}: the implementations do not match the names declared in "
                f"llm_studio/config/registries.py: without implementation {missing}, "
                f"not declared {unknown}"
            )
        return Implementations(self.setting, {name: table[name] for name in self.names})


OPTIMIZERS = Registry(
    "training.optimizer", ("Adadelta", "Adam", "AdamW", "AdamW8bit", "RMSprop", "SGD")
)
SCHEDULES = Registry("training.schedule", ("Constant", "Cosine", "Linear"))

# Losses: each problem type's `training.loss_function` takes one of these.
TEXT_LOSSES = Registry(
    "training.loss_function", ("TokenAveragedCrossEntropy", "SampleAveragedCrossEntropy")
)
PREFERENCE_LOSSES = Registry(
    "training.loss_function",
    ("DPOLoss", "DPOHingeLoss", "DPOIPOLoss", "KTOPairLoss", "CPOLoss", "SimPOLoss"),
)
CLASSIFICATION_LOSSES = Registry("training.loss_function", ("CrossEntropy", "BinaryCrossEntropy"))
REGRESSION_LOSSES = Registry("training.loss_function", ("MSELoss", "MAELoss"))

# Validation metrics, by problem type.
TEXT_METRICS = Registry("prediction.metric", ("BLEU", "Perplexity", "GPT"))
CLASSIFICATION_METRICS = Registry("prediction.metric", ("AUC", "Accuracy", "LogLoss"))
REGRESSION_METRICS = Registry("prediction.metric", ("MSE", "MAE"))
# Which way is good: the experiment list (experiments/summary.py) picks each run's best value by
# it without importing the metrics; each Metric's `higher_is_better` agrees (test_registries.py).
HIGHER_IS_BETTER_METRICS = frozenset({"BLEU", "GPT", "AUC", "Accuracy"})

CHART_LOGGERS = Registry("logging.logger", ("None", "Neptune", "TensorBoard"))
