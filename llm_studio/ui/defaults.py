"""The demo datasets every fresh install starts with, imported offline from examples/data."""

from __future__ import annotations

import logging

from llm_studio.paths import examples_dir
from llm_studio.store import Store
from llm_studio.ui.datasets_service import import_service

log = logging.getLogger("llm_studio.ui")

DEFAULT_DATASETS = (
    # 25 chat rows keep the text their instruction is about in `input`: the prompt needs both.
    ("demo-chat", "text_causal_language_modeling", "demo_train.csv",
     {"prompt_column": ["instruction", "input"], "answer_column": "output",
      "parent_id_column": "parent_id", "system_column": "system"}),
    ("demo-dpo", "text_dpo_modeling", "demo_dpo.csv",
     {"prompt_column": ["instruction"], "answer_column": "output",
      "rejected_answer_column": "rejected_response"}),
    ("demo-classification", "text_causal_classification_modeling", "demo_classification.csv",
     {"prompt_column": ["instruction"], "answer_column": ["label"]}),
    ("demo-regression", "text_causal_regression_modeling", "demo_regression.csv",
     {"prompt_column": ["instruction"], "answer_column": ["target"]}),
)  # fmt: skip
DONE_SETTING = "default_datasets_created"


def ensure_default_datasets(store: Store | None = None) -> list[str]:
    """Import the demo datasets once per workdir; a user's deletion is respected later."""
    store = store or Store()
    if store.get_setting(DONE_SETTING):
        return []
    service = import_service(store)
    created = []
    for name, problem_type, file, settings in DEFAULT_DATASETS:
        if store.get_dataset_by_name(name) is not None:
            continue
        service.import_dataset(
            "upload",
            {"paths": [str(examples_dir() / "data" / file)]},
            name=name,
            problem_type=problem_type,
            train_dataframe=file,
            settings=settings,
        )
        created.append(name)
    store.set_setting(DONE_SETTING, True)
    log.info("created the default datasets %s", created)
    return created
