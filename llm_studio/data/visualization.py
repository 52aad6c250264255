"""Chat bubbles for the "Sample train visualization" tab: a few training samples, each the full
chain of turns that ends in one conversation's last row, as training builds it.

No torch or transformers: conversations are built with `build_conversations` on just the rows
of each sampled chain, so prompts, systems and chains read exactly as in training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from llm_studio.data.conversations import _id_text, build_conversations, check_columns
from llm_studio.data.readers import DataError

SYSTEM, USER, ASSISTANT = "system", "user", "assistant"


def parent_positions(df: pd.DataFrame, dataset_cfg, source: str = "data") -> np.ndarray:
    """Each row's parent row (-1: none), vectorized; ids compare as text, as in training."""
    column = getattr(dataset_cfg, "parent_id_column", None)
    if not column:
        return np.full(len(df), -1, dtype=np.int64)
    ids = pd.Index(df["id"].map(_id_text).astype(object))
    if not ids.is_unique:
        dup = ids[ids.duplicated()][0]
        rows = np.flatnonzero(ids == dup)[:2].tolist()
        raise DataError(f"{source}: id {dup!r} appears twice (rows {rows[0]} and {rows[1]})")
    parents = df[column].map(_id_text).astype(object).to_numpy()
    positions = ids.get_indexer(parents).astype(np.int64)
    positions[parents == ""] = -1
    return positions


def _chain(positions: np.ndarray, row: int, source: str) -> list[int]:
    chain = [row]
    while positions[chain[-1]] >= 0:
        chain.append(int(positions[chain[-1]]))
        if len(chain) > len(positions):
            raise DataError(f"{source}: parent chain of row {row} loops back on itself")
    chain.reverse()
    return chain


def _text(value) -> str:
    """A cell as shown: missing is "", a whole float (a label read as float) has no fraction."""
    if value is None or value is pd.NA:
        return ""
    return _id_text(value)


def _pick(candidates: np.ndarray, n: int, seed: int) -> list[int]:
    n = max(0, min(int(n), len(candidates)))
    rng = np.random.default_rng(seed)
    return [int(r) for r in rng.choice(candidates, size=n, replace=False)]


def sample_conversations(
    df: pd.DataFrame, dataset_cfg, n: int = 5, seed: int = 0, source: str = "train data"
) -> list[list[dict]]:
    """`n` random samples (fewer when the frame has fewer), each a list of bubbles
    `{"role": "system"|"user"|"assistant", "text": ..., "row": ...}` in conversation order.

    Chained data: samples are drawn among the rows no other row continues, and each shows the
    full chain from its first turn. DPO: the chosen answer is followed by the rejected one,
    marked `"rejected": True` (after the rejected prompt, also marked, when that differs).
    Classification/regression: the assistant bubble shows the label value(s).
    """
    answer = getattr(dataset_cfg, "answer_column", None)
    if not isinstance(answer, str):
        return _label_samples(df, dataset_cfg, list(answer or []), n, seed, source)
    check_columns(df, dataset_cfg, source)
    rejected_answer = getattr(dataset_cfg, "rejected_answer_column", None)
    rejected_prompt = getattr(dataset_cfg, "rejected_prompt_column", None)
    for key, column in (
        ("rejected_answer_column", rejected_answer),
        ("rejected_prompt_column", rejected_prompt),
    ):
        if column and column not in df.columns:
            raise DataError(
                f"{source}: column {column!r} (dataset.{key}) not found; "
                f"the file has columns {list(df.columns)}"
            )

    positions = parent_positions(df, dataset_cfg, source)
    continued = np.zeros(len(df), dtype=bool)
    continued[positions[positions >= 0]] = True
    samples = []
    for leaf in _pick(np.flatnonzero(~continued), n, seed):
        chain = _chain(positions, leaf, source)
        conv = build_conversations(df.iloc[chain], dataset_cfg, source)[-1]
        bubbles = []
        if conv.system:
            bubbles.append({"role": SYSTEM, "text": conv.system, "row": chain[0]})
        for row, prompt, reply in zip(chain, conv.prompts, conv.answers, strict=True):
            bubbles.append({"role": USER, "text": prompt, "row": row})
            bubbles.append({"role": ASSISTANT, "text": reply, "row": row})
        if rejected_answer:
            if rejected_prompt:
                text = _text(df[rejected_prompt].iloc[leaf])
                if text != conv.prompts[-1]:
                    bubbles.append({"role": USER, "text": text, "row": leaf, "rejected": True})
            text = _text(df[rejected_answer].iloc[leaf])
            bubbles.append({"role": ASSISTANT, "text": text, "row": leaf, "rejected": True})
        samples.append(bubbles)
    return samples


def _label_samples(
    df: pd.DataFrame, dataset_cfg, labels: list[str], n: int, seed: int, source: str
) -> list[list[dict]]:
    prompts = list(dataset_cfg.prompt_column)
    system = getattr(dataset_cfg, "system_column", None)
    needed = prompts + labels + ([system] if system else [])
    for column in needed:
        if column not in df.columns:
            raise DataError(
                f"{source}: column {column!r} not found; the file has columns {list(df.columns)}"
            )
    sep = dataset_cfg.prompt_column_separator
    samples = []
    for row in _pick(np.arange(len(df)), n, seed):
        record = df.iloc[row]
        bubbles = []
        if system and _text(record[system]):
            bubbles.append({"role": SYSTEM, "text": _text(record[system]), "row": row})
        prompt = sep.join(_text(record[c]) for c in prompts)
        bubbles.append({"role": USER, "text": prompt, "row": row})
        if len(labels) == 1:
            label = _text(record[labels[0]])
        else:
            label = ", ".join(f"{c}: {_text(record[c])}" for c in labels)
        bubbles.append({"role": ASSISTANT, "text": label, "row": row})
        samples.append(bubbles)
    return samples
