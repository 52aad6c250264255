"""Train/validation split and data sampling; chains of a conversation never straddle the split."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llm_studio.config.base import BaseConfig
from llm_studio.config.sections import ChatDatasetSection
from llm_studio.data.conversations import build_conversations, chain_roots, leaf_rows
from llm_studio.data.personalize import personalize
from llm_studio.data.prompt_format import Conversation
from llm_studio.data.quality import check_answers
from llm_studio.data.readers import DataError, read_dataframe

# Validation insights show the 5 best and the 5 worst samples: with fewer than 10 validation
# samples they overlap (with one, Best, Worst and Random are the same row), and a metric over
# a handful of rows says little. The automatic split and the data sample keep at least this
# many (at most half the data); docs/settings.md states the rule under validation_size.
MIN_VALIDATION_SAMPLES = 10


@dataclass
class SplitData:
    train: list[Conversation]
    validation: list[Conversation]


def split_and_sample(cfg: BaseConfig, seed: int, task=None) -> SplitData:
    """Items per row (the task's kind; conversations by default), split and sampled."""
    ds = cfg.dataset
    rng = np.random.default_rng(seed)
    build = task.build_items if task else functools.partial(build_conversations, dataset_cfg=ds)
    train_df = read_dataframe(ds.train_dataframe)
    check_answers(train_df, ds, ds.train_dataframe)  # the import wizard's rules, for train.py
    train_convs = build(train_df, source=ds.train_dataframe)
    train_keep = _kept_rows(train_df, ds)
    if ds.validation_strategy == "custom":
        val_source = ds.validation_dataframe
        if not val_source:  # the config checks say so before a run; train.py -Y skips them
            raise DataError(
                "dataset.validation_dataframe: the custom validation strategy needs a dataframe"
            )
        val_df = read_dataframe(val_source)
        check_answers(val_df, ds, val_source)
        val_convs = build(val_df, source=val_source)
        val_convs = [c for c, keep in zip(val_convs, _kept_rows(val_df, ds), strict=True) if keep]
        train_convs = [c for c, keep in zip(train_convs, train_keep, strict=True) if keep]
    else:
        train_rows, val_rows = _automatic_split(train_df, ds, rng, train_keep)
        val_convs = [train_convs[i] for i in val_rows if train_keep[i]]
        train_convs = [train_convs[i] for i in train_rows if train_keep[i]]

    if "Train" in ds.data_sample_choice:
        train_convs = _sample(train_convs, ds.data_sample, rng)
    if "Validation" in ds.data_sample_choice:
        val_convs = _sample(val_convs, ds.data_sample, rng, at_least=MIN_VALIDATION_SAMPLES)
    if cfg.training.train_validation_data:
        train_convs = train_convs + val_convs
    if isinstance(ds, ChatDatasetSection) and ds.personalize:
        train_convs = (
            task.personalize(train_convs)
            if task
            else personalize(train_convs, ds.chatbot_name, ds.chatbot_author)
        )
    if not train_convs:
        raise DataError(f"{ds.train_dataframe}: no training rows left after the split and sampling")
    if not val_convs:
        raise DataError(
            f"{ds.train_dataframe}: no validation rows left; raise dataset.validation_size "
            "or dataset.data_sample"
        )
    return SplitData(train=train_convs, validation=val_convs)


def _kept_rows(df: pd.DataFrame, ds) -> list[bool]:
    """limit_chained_samples keeps only whole conversations (rows no other row continues)."""
    if getattr(ds, "limit_chained_samples", False) and getattr(ds, "parent_id_column", None):
        return leaf_rows(df, ds)
    return [True] * len(df)


def _automatic_split(
    df: pd.DataFrame, ds, rng: np.random.Generator, keep: list[bool]
) -> tuple[list[int], list[int]]:
    """Hold out `validation_size` of the conversations (chains stay whole), but at least
    MIN_VALIDATION_SAMPLES kept rows, or half of them when the data is smaller."""
    roots = np.asarray(chain_roots(df, ds))
    groups, group_of_row = np.unique(roots, return_inverse=True)
    if len(groups) < 2:
        return list(range(len(df))), []
    samples = np.bincount(
        group_of_row, weights=np.asarray(keep, dtype=float), minlength=len(groups)
    )
    order = rng.permutation(len(groups))
    by_size = int(round(len(groups) * ds.validation_size))
    floor = min(MIN_VALIDATION_SAMPLES, int(samples.sum()) // 2)
    # The fewest groups, in the drawn order, that hold `floor` samples.
    by_floor = int(np.searchsorted(np.cumsum(samples[order]), floor)) + 1 if floor else 0
    n_val = min(max(by_size, by_floor, 1), len(groups) - 1)
    in_val = np.isin(group_of_row, order[:n_val])
    return np.flatnonzero(~in_val).tolist(), np.flatnonzero(in_val).tolist()


def _sample(items: list, fraction: float, rng: np.random.Generator, at_least: int = 1) -> list:
    if fraction >= 1.0 or not items:
        return items
    n = min(len(items), max(at_least, 1, int(round(len(items) * fraction))))
    keep = np.sort(rng.choice(len(items), size=n, replace=False))
    return [items[i] for i in keep]
