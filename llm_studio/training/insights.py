"""Train data insights: the first batch decoded exactly as the model sees it."""

from __future__ import annotations

from llm_studio.data.tokenization import IGNORE_INDEX
from llm_studio.experiments.folder import ExperimentFolder


def write_train_insights(folder: ExperimentFolder, batch: dict, tokenizer) -> None:
    """Pieces of text, each marked `masked` (no loss), `trained` (loss) or `padding`."""
    samples = []
    for ids, labels, attention in zip(
        batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
    ):
        pieces: list[dict] = []
        for token_id, label, real in zip(
            ids.tolist(), labels.tolist(), attention.tolist(), strict=True
        ):
            kind = "padding" if not real else ("trained" if label != IGNORE_INDEX else "masked")
            if pieces and pieces[-1]["kind"] == kind:
                pieces[-1]["ids"].append(token_id)
            else:
                pieces.append({"kind": kind, "ids": [token_id]})
        samples.append(
            [
                {"kind": p["kind"], "text": tokenizer.decode(p["ids"], skip_special_tokens=False)}
                for p in pieces
            ]
        )
    folder.write_json(
        folder.train_insights,
        {"shape": list(batch["input_ids"].shape), "samples": samples},
    )
