"""Rows -> conversations: prompt columns joined, parent chains followed, columns checked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from llm_studio.data.prompt_format import Conversation
from llm_studio.data.readers import DataError


@dataclass(frozen=True)
class ConversationColumns:
    """The columns a row's conversation is read from, when they are not the dataset section's
    own (which `build_conversations` also takes): e.g. a head's prompts, with no chains."""

    prompt_column: Sequence[str]
    prompt_column_separator: str
    answer_column: str
    system_column: str | None
    parent_id_column: str | None = None  # None: each row is a conversation of its own


def check_columns(df: pd.DataFrame, dataset_cfg, source: str) -> None:
    needed = {"dataset.prompt_column": list(dataset_cfg.prompt_column)}
    needed["dataset.answer_column"] = [dataset_cfg.answer_column]
    if dataset_cfg.system_column:
        needed["dataset.system_column"] = [dataset_cfg.system_column]
    if dataset_cfg.parent_id_column:
        needed["dataset.parent_id_column"] = [dataset_cfg.parent_id_column, "id"]
    for key, columns in needed.items():
        for column in columns:
            if column not in df.columns:
                raise DataError(
                    f"{source}: column {column!r} ({key}) not found; "
                    f"the file has columns {list(df.columns)}"
                )


def _text(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value)


def _id_text(value) -> str:
    """Ids compare as text; a numeric column read as float (because of empty parents) gives
    1.0 for 1, so whole floats are written without the fraction."""
    if isinstance(value, float) and not pd.isna(value) and value.is_integer():
        return str(int(value))
    return _text(value)


def build_conversations(df: pd.DataFrame, dataset_cfg, source: str) -> list[Conversation]:
    """One conversation per row: the row's own turn, after the chain of its parents."""
    check_columns(df, dataset_cfg, source)
    sep = dataset_cfg.prompt_column_separator
    prompt_parts = [df[c].map(_text) for c in dataset_cfg.prompt_column]
    prompts = prompt_parts[0]
    for part in prompt_parts[1:]:
        prompts = prompts.str.cat(part, sep=sep)
    prompts = prompts.tolist()
    answers = df[dataset_cfg.answer_column].map(_text).tolist()
    systems = (
        df[dataset_cfg.system_column].map(_text).tolist()
        if dataset_cfg.system_column
        else [""] * len(df)
    )
    parents = _parent_positions(df, dataset_cfg, source)

    conversations = []
    for row in range(len(df)):
        chain = [row]
        while (parent := parents[chain[-1]]) is not None:
            chain.append(parent)
            if len(chain) > len(df):
                raise DataError(f"{source}: parent chain of row {row} loops back on itself")
        chain.reverse()
        conversations.append(
            Conversation(
                system=systems[chain[0]] or None,
                prompts=tuple(prompts[i] for i in chain),
                answers=tuple(answers[i] for i in chain),
            )
        )
    return conversations


def _parent_positions(df: pd.DataFrame, dataset_cfg, source: str) -> list[int | None]:
    if not getattr(dataset_cfg, "parent_id_column", None):  # label types have no chains
        return [None] * len(df)
    ids = df["id"].map(_id_text).tolist()
    position: dict[str, int] = {}
    for i, id_ in enumerate(ids):
        if id_ in position:
            raise DataError(f"{source}: id {id_!r} appears twice (rows {position[id_]} and {i})")
        position[id_] = i
    out: list[int | None] = []
    for parent in df[dataset_cfg.parent_id_column].map(_id_text).tolist():
        # A parent id that is not in this file starts a new chain, as a missing parent would.
        out.append(position.get(parent) if parent else None)
    return out


def chain_roots(df: pd.DataFrame, dataset_cfg) -> list[int]:
    """For each row, the position of its chain's first row: the unit that splits keep together."""
    parents = _parent_positions(df, dataset_cfg, "data")
    roots = []
    for row in range(len(df)):
        node, steps = row, 0
        while (parent := parents[node]) is not None and steps <= len(df):
            node, steps = parent, steps + 1
        roots.append(node)
    return roots


def leaf_rows(df: pd.DataFrame, dataset_cfg) -> list[bool]:
    """Rows that no other row continues: the ends of conversations (full chains)."""
    parents = _parent_positions(df, dataset_cfg, "data")
    continued = {p for p in parents if p is not None}
    return [row not in continued for row in range(len(df))]
