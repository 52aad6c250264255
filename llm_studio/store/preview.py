"""The import preview: samples rendered the way training renders them (the prompt format and
the backbone's EOS token, read from its tokenizer files so no torch is needed), after checking
the values the problem type reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from llm_studio.config.problem_types import BaseConfig, problem_type_of
from llm_studio.data.conversations import build_conversations, leaf_rows
from llm_studio.data.labels import (
    answer_columns,
    class_labels,
    prompt_columns,
    regression_targets,
)
from llm_studio.data.prompt_format import Conversation, PromptFormat
from llm_studio.data.quality import check_answers
from llm_studio.models.offline_backbone import local_copy
from llm_studio.store.columns import check_columns
from llm_studio.store.import_types import PreviewSample


def backbone_eos_token(backbone: str) -> str | None:
    """The EOS token of the backbone's tokenizer (what `AutoTokenizer.from_pretrained(...)
    .eos_token` gives training), read from its tokenizer files so the UI needs no torch;
    None when they are not on this machine."""
    folder = Path(backbone).expanduser()
    if not folder.is_dir():  # a hub name: its prepared copy, if this machine has one
        prepared = local_copy(backbone)
        if prepared is None:
            return None
        folder = prepared
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        eos = data.get("eos_token") if isinstance(data, dict) else None
        if isinstance(eos, dict):  # older tokenizers store an AddedToken mapping
            eos = eos.get("content")
        if isinstance(eos, str) and eos:
            return eos
    return None


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value)


def check_and_preview(
    df: pd.DataFrame, cfg: BaseConfig, source: str, n: int, eos_token: str
) -> list[PreviewSample]:
    """Check the values the problem type reads (ids and chains, labels) and render `n`
    samples; raises a DataError naming the file, column and row."""
    if problem_type_of(cfg).has_head:
        return _label_preview(df, cfg, source, n, eos_token)
    return _answer_preview(df, cfg, source, n, eos_token)


def _label_preview(
    df: pd.DataFrame, cfg: BaseConfig, source: str, n: int, eos_token: str
) -> list[PreviewSample]:
    """A head's samples: the prompt, as training renders it (it ends at the answer separator,
    so no EOS after the answer), and the label(s)."""
    ds: Any = cfg.dataset  # fields vary by problem type; its descriptor says which exist
    columns = answer_columns(ds)
    if problem_type_of(cfg).predicts_values:
        regression_targets(df, columns, source)
    else:
        class_labels(df, columns, source, multi_label=len(columns) > 1)
    fmt = PromptFormat.from_config(ds, eos_token, answers=False)
    head = df.head(n)
    samples = []
    for i, conv in enumerate(build_conversations(head, prompt_columns(ds), source)):
        row = head.iloc[i]
        label = (
            _cell(row[columns[0]])
            if len(columns) == 1
            else ", ".join(f"{c}={_cell(row[c])}" for c in columns)
        )
        samples.append(PreviewSample(fmt.render(conv, with_last_answer=False), label).shortened())
    return samples


def _answer_preview(
    df: pd.DataFrame, cfg: BaseConfig, source: str, n: int, eos_token: str
) -> list[PreviewSample]:
    """Samples whose answer is text: the prompt up to it (earlier turns of a chain included)
    and the answer, with the rejected one for a preference pair."""
    ds: Any = cfg.dataset  # fields vary by problem type; its descriptor says which exist
    fmt = PromptFormat.from_config(ds, eos_token)
    chained = bool(ds.parent_id_column)
    frame = df if chained else df.head(n)  # chains need every row; plain rows only the first
    convs = build_conversations(frame, ds, source)  # also checks ids and chain loops
    rows = [i for i, leaf in enumerate(leaf_rows(frame, ds)) if leaf] if chained else None
    rows = (rows or list(range(len(frame))))[:n]
    eos = eos_token if fmt.eos_after_answer else ""
    pairs = problem_type_of(cfg).needs_pairs
    samples = []
    for i in rows:
        conv = convs[i]
        rejected = rejected_prompt = None
        if pairs:
            rejected = _cell(frame[ds.rejected_answer_column].iloc[i]) + eos
            if ds.rejected_prompt_column:
                last = _cell(frame[ds.rejected_prompt_column].iloc[i])
                other = Conversation(conv.system, conv.prompts[:-1] + (last,), conv.answers)
                rejected_prompt = fmt.render(other, with_last_answer=False)
        prompt = fmt.render(conv, with_last_answer=False)
        sample = PreviewSample(prompt, conv.answers[-1] + eos, rejected, rejected_prompt)
        samples.append(sample.shortened())
    return samples


def check_dataframe(
    df: pd.DataFrame, cfg: BaseConfig, source: str, n: int, eos_token: str
) -> tuple[list[PreviewSample], list[str]]:
    """Check a chosen dataframe against the dataset section (columns exist, values fit the
    problem type) and render `n` samples; returns (samples, warnings about its answers)."""
    check_columns(df, cfg, source)
    warnings = check_answers(df, cfg.dataset, source)
    return check_and_preview(df, cfg, source, n, eos_token), warnings
