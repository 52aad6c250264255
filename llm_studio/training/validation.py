"""Validation: teacher-forced loss per row, generated answers, the metric, and what is written."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from llm_studio.atomic import write_atomic
from llm_studio.data.tokenization import Collate, encode_prompt
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.metrics.text import Metric
from llm_studio.models.generation import generate_batch
from llm_studio.training.distributed import map_batches
from llm_studio.training.losses import per_sample_loss

INSIGHT_ROWS = 5


@dataclass
class ValidationResult:
    prompts: list[str]
    targets: list[str]
    predictions: list[str]
    losses: list[float]
    scores: list[float]

    @property
    def loss(self) -> float:
        return float(np.mean(self.losses))

    @property
    def charts(self) -> dict[str, float]:
        return {}

    @property
    def metric_value(self) -> float:
        return float(np.nanmean(self.scores))

    def frame(self, metric: Metric) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "prompt": self.prompts,
                "target_text": self.targets,
                "predicted_text": self.predictions,
                "loss": self.losses,
                metric.name: self.scores,
            }
        )

    def write(self, folder: ExperimentFolder, metric: Metric) -> None:
        df = self.frame(metric)
        write_atomic(folder.predictions_csv, lambda tmp: df.to_csv(tmp, index=False))
        scores = df[metric.name].to_numpy(dtype=float)
        scored = np.flatnonzero(~np.isnan(scores))  # rows the metric could not score rank nowhere
        order = scored[np.argsort(scores[scored], kind="stable")]
        if metric.higher_is_better:
            order = order[::-1]
        rng = np.random.default_rng(0)
        pick = rng.choice(len(df), size=min(INSIGHT_ROWS, len(df)), replace=False)

        def rows(idx) -> list[dict]:
            return df.iloc[list(idx)].to_dict(orient="records")

        folder.write_json(
            folder.prediction_insights,
            {
                "metric": metric.name,
                "best": rows(order[:INSIGHT_ROWS]),
                "worst": rows(order[::-1][:INSIGHT_ROWS]),
                "random": rows(pick),
            },
        )


@torch.no_grad()
def validate(
    model, tokenizer, fmt, conversations, encoded, cfg, device, metric: Metric
) -> ValidationResult | None:
    """In DDP, every rank validates its share of the batches and rank 0 alone gets the
    result; the other ranks get None."""
    was_training = model.training
    model.eval()
    batch_size = cfg.prediction.batch_size_inference or cfg.training.batch_size
    tok = cfg.tokenizer
    collate = Collate(tokenizer.pad_token_id, tok.padding_quantile, tok.max_length)

    def loss_and_prediction(rows: list) -> list[tuple[float, str]]:
        batch = collate.padded_to_longest()([sample for _, sample, _ in rows])
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits
        losses = per_sample_loss(logits, batch["labels"]).float().cpu().tolist()
        if not metric.needs_generation:  # Perplexity scores the losses alone
            return [(loss, "") for loss in losses]
        prompt_ids = [prompt for _, _, prompt in rows]
        return list(
            zip(
                losses,
                generate_batch(model, tokenizer, prompt_ids, cfg.prediction, device),
                strict=True,
            )
        )

    # Batches of similar prompt lengths pad little, in the loss and in generation; the rows
    # go back to the conversations' order after.
    prompt_ids = [encode_prompt(c, tokenizer, fmt, cfg.tokenizer.max_length) for c in conversations]
    order = sorted(
        range(len(conversations)), key=lambda i: (len(prompt_ids[i]), len(encoded[i].input_ids))
    )
    items = [(conversations[i], encoded[i], prompt_ids[i]) for i in order]
    sorted_rows = map_batches(loss_and_prediction, items, batch_size)
    model.train(was_training)
    if sorted_rows is None:
        return None
    back = sorted(zip(order, sorted_rows, strict=True), key=lambda pair: pair[0])
    return scored(conversations, [row for _, row in back], fmt, metric, cfg.prediction)


def scored(
    conversations: list, rows: list[tuple[float, str]], fmt, metric: Metric, prediction_cfg
) -> ValidationResult:
    """The validation result of (loss, prediction) rows, one per conversation, in its order:
    each last answer is the target the metric scores the prediction against."""
    losses = [loss for loss, _ in rows]
    predictions = [prediction for _, prediction in rows]
    targets = [c.answers[-1] for c in conversations]
    scores = metric.score(
        predictions=predictions,
        targets=targets,
        prompts=[c.prompts[-1] for c in conversations],
        sample_losses=losses,
        prediction_cfg=prediction_cfg,
    )
    prompts = [fmt.render(c, with_last_answer=False) for c in conversations]
    return ValidationResult(prompts, targets, predictions, losses, scores)
