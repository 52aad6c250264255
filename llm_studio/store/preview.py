"""The import preview: samples rendered the way training renders them (the prompt format and
the backbone's EOS token, read from its tokenizer files so no torch is needed), after checking
the values the problem type reads."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from llm_studio.config.dpo import DPODatasetSection
from llm_studio.config.problem_types import BaseConfig
from llm_studio.config.sections import ChatDatasetSection
from llm_studio.data.conversations import build_conversations, leaf_rows
from llm_studio.data.labels import class_labels, regression_targets
from llm_studio.data.prompt_format import Conversation, PromptFormat
from llm_studio.data.quality import check_answers
from llm_studio.models.offline_backbone import local_copy
from llm_studio.store.columns import as_list, check_columns
from llm_studio.store.import_types import DPO, LABEL_TYPES, REGRESSION, PreviewSample


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


def _prompt_format(cfg: BaseConfig, eos_token: str) -> PromptFormat:
    """The format training renders with (see the tasks' `PromptFormat.from_config`); label
    problems never render their answer, so it gets no EOS there either."""
    ds = cfg.dataset
    if cfg.problem_type in LABEL_TYPES:
        ds = copy.copy(ds)
        ds.add_eos_token_to_answer = False  # type: ignore[attr-defined]  # a view: label sections lack it
    return PromptFormat.from_config(ds, eos_token)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value)


def check_and_preview(
    df: pd.DataFrame, cfg: BaseConfig, source: str, n: int, eos_token: str
) -> list[PreviewSample]:
    """Check the values the problem type reads (ids and chains, labels) and render `n`
    samples; raises a DataError naming the file, column and row."""
    ds, problem_type = cfg.dataset, cfg.problem_type
    fmt = _prompt_format(cfg, eos_token)
    if problem_type in LABEL_TYPES:
        columns = as_list(ds.answer_column)  # type: ignore[attr-defined]  # label sections have one
        if problem_type == REGRESSION:
            regression_targets(df, columns, source)
        else:
            class_labels(df, columns, source, multi_label=len(columns) > 1)
        view = SimpleNamespace(
            prompt_column=ds.prompt_column,
            prompt_column_separator=ds.prompt_column_separator,
            answer_column=columns[0],
            system_column=ds.system_column,
            parent_id_column=None,
        )
        head = df.head(n)
        convs = build_conversations(head, view, source)
        samples = []
        for i, conv in enumerate(convs):
            row = head.iloc[i]
            label = (
                _cell(row[columns[0]])
                if len(columns) == 1
                else ", ".join(f"{c}={_cell(row[c])}" for c in columns)
            )
            samples.append(
                PreviewSample(fmt.render(conv, with_last_answer=False), label).shortened()
            )
        return samples

    assert isinstance(ds, ChatDatasetSection)  # every type but the label ones (returned above)
    chained = bool(ds.parent_id_column)
    frame = df if chained else df.head(n)  # chains need every row; plain rows only the first
    convs = build_conversations(frame, ds, source)  # also checks ids and chain loops
    rows = [i for i, leaf in enumerate(leaf_rows(frame, ds)) if leaf] if chained else None
    rows = (rows or list(range(len(frame))))[:n]
    eos = eos_token if fmt.eos_after_answer else ""
    samples = []
    for i in rows:
        conv = convs[i]
        rejected = rejected_prompt = None
        if problem_type == DPO:
            assert isinstance(ds, DPODatasetSection)
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
    check_columns(df, cfg.dataset, source)
    warnings = check_answers(df, cfg.dataset, source)
    return check_and_preview(df, cfg, source, n, eos_token), warnings
