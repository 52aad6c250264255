"""Causal classification and regression: a linear head on the last real token of the prompt.

Both problem types share this task. Each row becomes the causal LM's prompt (system + prompt +
answer separator, rendered by the shared prompt format) and its answer column(s) as numbers:
class ids (several columns: multi-label, 0/1 each) or regression targets. The backbone is
loaded and adapted (LoRA, quantization, checkpointing) exactly as for causal LM, then wrapped
with the head (`llm_studio.models.heads.LabelModel`); saving writes the merged backbone as for
causal LM plus the head files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from llm_studio.atomic import write_text_atomic
from llm_studio.config.classification import ClassificationDatasetSection, label_errors
from llm_studio.config.problem_types import BaseConfig, problem_type_of
from llm_studio.config.registries import CLASSIFICATION_LOSSES, REGRESSION_LOSSES
from llm_studio.config.settings import ConfigError
from llm_studio.data.augmentation import ChainAugmentation, TrainingSamples
from llm_studio.data.conversations import build_conversations
from llm_studio.data.labels import (
    answer_columns,
    check_class_range,
    class_labels,
    infer_num_classes,
    prompt_columns,
    regression_targets,
)
from llm_studio.data.prompt_format import Conversation, PromptFormat
from llm_studio.data.tokenization import Collate, EncodedSample, encode_prompt
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.export.checkpoint import is_peft
from llm_studio.models.backbone import model_source
from llm_studio.models.heads import LabelModel, read_head, save_head
from llm_studio.training.distributed import map_batches
from llm_studio.training.tasks.causal_lm import CausalLMTask

log = logging.getLogger("llm_studio")

INSIGHT_ROWS = 5


# --- losses: per-row values of (raw head outputs, float targets); the batch loss is the mean ---
def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.float(), targets[:, 0].long(), reduction="none")


def binary_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(
        outputs.float(), targets.float(), reduction="none"
    ).mean(dim=1)


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs.float() - targets.float()) ** 2).mean(dim=1)


def absolute_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.float() - targets.float()).abs().mean(dim=1)


_LABEL_LOSS_NAMES = CLASSIFICATION_LOSSES + REGRESSION_LOSSES
LABEL_LOSSES = _LABEL_LOSS_NAMES.implement(
    {
        "CrossEntropy": cross_entropy,
        "BinaryCrossEntropy": binary_cross_entropy,
        "MSELoss": squared_error,
        "MAELoss": absolute_error,
    }
)
# How raw outputs become predictions (written into the head's json for inference).
ACTIVATIONS = _LABEL_LOSS_NAMES.implement(
    {
        "CrossEntropy": "softmax",
        "BinaryCrossEntropy": "sigmoid",
        "MSELoss": "none",
        "MAELoss": "none",
    }
)


def predictions_from(raw: torch.Tensor, activation: str, single_binary: bool) -> np.ndarray:
    """Class probabilities (a single sigmoid output gives [1 - p, p]) or regression values."""
    raw = raw.double()
    if activation == "softmax":
        out = raw.softmax(dim=-1)
    elif activation == "sigmoid":
        out = raw.sigmoid()
        if single_binary:
            out = torch.cat([1 - out, out], dim=1)
    else:
        out = raw
    return out.cpu().numpy()


# --- data ---
@dataclass(frozen=True)
class LabelItem:
    conversation: Conversation
    target: tuple[float, ...]  # one value per answer column


@dataclass
class LabelSample(EncodedSample):
    """The prompt's token ids (`labels` stays empty: the loss uses `target`)."""

    target: tuple[float, ...]


# --- validation ---
@dataclass
class LabelValidationResult:
    frame: pd.DataFrame  # one row per validation item, as written to the predictions CSV
    metric_value: float

    @property
    def loss(self) -> float:
        return float(self.frame["loss"].mean())

    @property
    def charts(self) -> dict[str, float]:
        return {}

    def write(self, folder: ExperimentFolder, metric) -> None:
        write_text_atomic(folder.predictions_csv, self.frame.to_csv(index=False))
        # AUC has no per-row value, so rows rank by their loss whatever the metric.
        order = np.argsort(self.frame["loss"].to_numpy(), kind="stable")
        rng = np.random.default_rng(0)
        pick = rng.choice(len(self.frame), size=min(INSIGHT_ROWS, len(self.frame)), replace=False)

        def rows(idx) -> list[dict]:
            return self.frame.iloc[list(idx)].to_dict(orient="records")

        folder.write_json(
            folder.prediction_insights,
            {
                "metric": metric.name,
                "ranked_by": "loss",
                "best": rows(order[:INSIGHT_ROWS]),
                "worst": rows(order[::-1][:INSIGHT_ROWS]),
                "random": rows(pick),
            },
        )


class LabelTask(CausalLMTask):
    """The task of text_causal_classification_modeling and text_causal_regression_modeling."""

    def __init__(self, cfg: BaseConfig, device: torch.device):
        super().__init__(cfg, device)
        self.columns = answer_columns(cfg.dataset)
        # Each row one prompt (ending at the answer separator: the label is never rendered).
        self.prompt_columns = prompt_columns(cfg.dataset)
        self.regression = problem_type_of(cfg).predicts_values
        self.multi_label = not self.regression and len(self.columns) > 1
        self.loss_name = cfg.training.loss_function
        self.num_classes: int | None = None  # set from the first (train) dataframe read
        self.model: LabelModel | None = None
        self._fresh_head = True
        self._check_config()

    def _check_config(self) -> None:
        if self.loss_name not in LABEL_LOSSES:
            raise ConfigError(
                f"training.loss_function: {self.loss_name!r} is not one of {sorted(LABEL_LOSSES)}"
            )
        errors = label_errors(self.cfg)
        if errors:
            raise ConfigError(errors[0])

    # --- data ---
    def build_items(self, df: pd.DataFrame, source: str) -> list[LabelItem]:
        conversations = build_conversations(df, self.prompt_columns, source)
        if self.regression:
            targets = regression_targets(df, self.columns, source)
        else:
            targets = class_labels(df, self.columns, source, self.multi_label)
            self._check_classes(targets, source)
        return [
            LabelItem(c, tuple(t)) for c, t in zip(conversations, targets.tolist(), strict=True)
        ]

    def _check_classes(self, labels: np.ndarray, source: str) -> None:
        if self.multi_label:
            self.num_classes = len(self.columns)
            return
        n = self._configured_classes
        if self.loss_name == "BinaryCrossEntropy":
            why = "BinaryCrossEntropy with one answer column is binary: labels 0 and 1"
            check_class_range(labels, 2, self.columns, source, why)
            self.num_classes = 2
        elif n:
            check_class_range(labels, n, self.columns, source, "dataset.num_classes")
            self.num_classes = n
        elif self.num_classes is None:
            # split_and_sample reads the train dataframe first: it sets the number of classes.
            self.num_classes = infer_num_classes(labels, multi_label=False)
            log.info("dataset.num_classes: %d, inferred from %s", self.num_classes, source)
        else:
            why = "as inferred from the train data; set dataset.num_classes for more"
            check_class_range(labels, self.num_classes, self.columns, source, why)

    def personalize(self, items: list) -> list:
        return items  # the label types have no assistant answers to personalize

    @property
    def num_outputs(self) -> int:
        if self.regression or self.multi_label:
            return len(self.columns)
        if self.loss_name == "BinaryCrossEntropy":
            return 1
        if self.num_classes is None:
            if not self._configured_classes:
                raise ConfigError(
                    "dataset.num_classes: 0 infers it from the train data, which is not read yet"
                )
            self.num_classes = self._configured_classes
        return self.num_classes

    @property
    def _configured_classes(self) -> int:
        """dataset.num_classes (0: infer it); regression has no such setting."""
        ds = self.cfg.dataset
        return ds.num_classes if isinstance(ds, ClassificationDatasetSection) else 0

    @property
    def single_binary(self) -> bool:
        return not self.regression and not self.multi_label and self.num_outputs == 1

    def output_columns(self) -> list[str]:
        """The predictions CSV's columns for the model's outputs."""
        if self.regression:
            return self._per_column("prediction")
        width = 2 if self.single_binary else self.num_outputs
        return [f"probability_{k}" for k in range(width)]

    def _per_column(self, prefix: str) -> list[str]:
        if len(self.columns) == 1:
            return [prefix]
        return [f"{prefix}_{c}" for c in self.columns]

    # --- model ---
    def _set_tokenizer(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.fmt = PromptFormat.from_config(self.cfg.dataset, tokenizer.eos_token, answers=False)

    def load(self):
        backbone = super().load()  # tokenizer, format, backbone with adapters, as for causal LM
        self.model = LabelModel(backbone.model, self.num_outputs)
        if self.cfg.architecture.pretrained_weights:
            self._load_previous_head(model_source(self.cfg))
        backbone.model = self.model
        return backbone

    def _load_previous_head(self, folder: str) -> None:
        saved = read_head(Path(folder))
        if saved is None:
            log.info("architecture.pretrained_weights: %s has no head; starting a new one", folder)
            return
        tensors, _ = saved
        assert self.model is not None  # load() built it just before
        head = self.model.head
        if tensors["weight"].shape != head.weight.shape:
            log.warning(
                "architecture.pretrained_weights: the saved head has shape %s, this one %s; "
                "starting a new head",
                tuple(tensors["weight"].shape),
                tuple(head.weight.shape),
            )
            return
        with torch.no_grad():
            head.weight.copy_(tensors["weight"])
            head.bias.copy_(tensors["bias"])
        self._fresh_head = False
        log.info("architecture.pretrained_weights: head loaded from %s", folder)

    # --- batches ---
    def encode(self, item: LabelItem) -> LabelSample:
        ids = encode_prompt(
            item.conversation, self.tokenizer, self.fmt, self.cfg.tokenizer.max_length
        )
        return LabelSample(input_ids=ids, labels=[], target=item.target)

    def training_dataset(self, items: list[LabelItem], seed: int):
        if self.regression and self._fresh_head and self.model is not None and items:
            # Start at the train mean: the head then learns the deviations, not the offset.
            mean = np.mean([item.target for item in items], axis=0)
            with torch.no_grad():
                self.model.head.bias.copy_(torch.as_tensor(mean, dtype=torch.float32))
        # No chain augmentations: the rows are not chained.
        return TrainingSamples(items, self.encode, ChainAugmentation(), seed)  # type: ignore[arg-type]  # items are LabelItems here

    @property
    def collate(self) -> Collate:
        return self.collate_as(labels="none", targets=True)

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return LABEL_LOSSES[self.loss_name](outputs, batch["targets"]).mean(), {}

    def loss_tokens(self, batch: dict) -> int:
        return len(batch["input_ids"])  # one prediction per row

    # --- validation ---
    def metric_targets(self, items: list[LabelItem]) -> np.ndarray:
        """Targets as the label metrics take them (see llm_studio.metrics.classification)."""
        values = np.array([item.target for item in items], dtype=np.float64)
        values = values.reshape(len(items), len(self.columns))
        if self.regression:
            return values
        labels = values.astype(np.int64)
        return labels if self.multi_label else labels[:, 0]

    @torch.no_grad()
    def validate(self, model, items: list[LabelItem], metric) -> LabelValidationResult | None:
        """Sharded over the ranks in DDP: rank 0 gets the result, the others None."""
        was_training = model.training
        model.eval()
        batch_size = self.cfg.prediction.batch_size_inference or self.cfg.training.batch_size

        def outputs_and_loss(chunk: list[LabelSample]) -> list[tuple[list[float], float]]:
            batch = self.collate.padded_to_longest()(chunk)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            losses = LABEL_LOSSES[self.loss_name](outputs, batch["targets"])
            return list(
                zip(outputs.float().cpu().tolist(), losses.float().cpu().tolist(), strict=True)
            )

        rows = map_batches(outputs_and_loss, [self.encode(item) for item in items], batch_size)
        model.train(was_training)
        if rows is None:
            return None
        raw = torch.tensor([outputs for outputs, _ in rows], dtype=torch.float32)
        losses = torch.tensor([loss for _, loss in rows], dtype=torch.float32)
        predictions = predictions_from(raw, ACTIVATIONS[self.loss_name], self.single_binary)
        targets = self.metric_targets(items)
        frame = pd.DataFrame({"prompt": [self.fmt.render(i.conversation, False) for i in items]})
        target_matrix = targets.reshape(len(items), -1)
        for k, name in enumerate(self._per_column("target")):
            frame[name] = target_matrix[:, k]
        for k, name in enumerate(self.output_columns()):
            frame[name] = predictions[:, k]
        if not self.regression and not self.multi_label:
            frame["predicted_class"] = predictions.argmax(axis=1)
        frame["loss"] = losses.double().numpy()
        row_scores = np.asarray(metric.score(targets=targets, outputs=predictions), dtype=float)
        if not np.all(np.isnan(row_scores)):
            frame[metric.name] = row_scores
        return LabelValidationResult(frame, metric.value(targets, predictions))

    # --- saving, insights ---
    def head_info(self) -> dict:
        """What inference needs besides the weights; written as classification_head.json."""
        return {
            "problem_type": self.cfg.problem_type,
            "answer_columns": self.columns,
            "num_outputs": self.num_outputs,
            "num_classes": None if self.regression else self.num_classes,
            "multi_label": self.multi_label,
            "activation": ACTIVATIONS[self.loss_name],
            "output_columns": self.output_columns(),
            "pooling": "last_token",
            "max_length": self.cfg.tokenizer.max_length,
        }

    def save(self, model, folder, dest=None, adapter: bool = True) -> None:
        model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
        super().save(model.backbone, folder, dest=dest, adapter=adapter)
        save_head(model.head, self.head_info(), dest or folder.checkpoint_dir)
        if adapter and is_peft(model.backbone):
            save_head(model.head, self.head_info(), folder.adapter_dir)

    def write_insights(self, folder, batch: dict) -> None:
        """The first batch as the model sees it: prompt tokens, padding, and the targets."""
        samples = []
        for ids, attention in zip(
            batch["input_ids"].tolist(), batch["attention_mask"].tolist(), strict=True
        ):
            n = sum(attention)
            pieces = [{"kind": "input", "ids": ids[:n]}, {"kind": "padding", "ids": ids[n:]}]
            samples.append(
                [
                    {"kind": p["kind"], "text": self.tokenizer.decode(p["ids"])}
                    for p in pieces
                    if p["ids"]
                ]
            )
        folder.write_json(
            folder.train_insights,
            {
                "shape": list(batch["input_ids"].shape),
                "samples": samples,
                "targets": batch["targets"].tolist(),
            },
        )
