"""The demo data a newcomer trains on first: every prompt carries the text its answer is about."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import REPO

from llm_studio.config.yaml_io import load_config
from llm_studio.data.conversations import build_conversations
from llm_studio.data.prompt_format import PromptFormat
from llm_studio.data.readers import read_dataframe

DEMO_CSV = REPO / "examples" / "data" / "demo_train.csv"


def rows_with_input() -> pd.DataFrame:
    df = pd.read_csv(DEMO_CSV, keep_default_na=False)
    with_input = df[df["input"].str.strip() != ""]
    assert len(with_input) == 25  # the demo's context rows; the test means nothing without them
    return with_input


def prompts_seen(cfg, train_csv) -> list[str]:
    """Each row's last prompt as the model sees it, rendered with the config's prompt format."""
    df = read_dataframe(train_csv)
    fmt = PromptFormat.from_config(cfg.dataset, eos_token="</s>")
    return [
        fmt.render(conv, with_last_answer=False)
        for conv in build_conversations(df, cfg.dataset, str(train_csv))
    ]


def assert_inputs_reach_the_prompt(cfg, train_csv) -> None:
    seen = prompts_seen(cfg, train_csv)
    missing = [
        (row.id, row.input)
        for row in rows_with_input().itertuples()
        if row.input not in seen[row.Index]
    ]
    assert not missing, f"rows whose input the model never sees: {missing[:5]}"


@pytest.fixture
def first_start(tmp_path, monkeypatch):
    """A fresh workdir after the app's first start: the demo datasets, as the GUI creates them."""
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    from llm_studio.store import Store
    from llm_studio.ui.defaults import ensure_default_datasets

    store = Store()
    assert "demo-chat" in ensure_default_datasets(store)
    return store


def test_demo_chat_created_on_first_start_shows_the_input_in_its_prompts(first_start):
    # The dataset's cfg.yaml is also what Create experiment pre-fills for it.
    record = first_start.get_dataset_by_name("demo-chat")
    cfg, _ = load_config(record.config_file)
    assert_inputs_reach_the_prompt(cfg, record.train_dataframe)


def test_example_demo_yaml_shows_the_input_in_its_prompts():
    cfg, _ = load_config(REPO / "examples" / "example_demo.yaml")
    assert_inputs_reach_the_prompt(cfg, DEMO_CSV)


@pytest.mark.parametrize("name", ["demo_dpo.csv", "demo_classification.csv", "demo_regression.csv"])
def test_derived_demo_datasets_keep_the_input_in_their_single_prompt_column(name):
    derived = pd.read_csv(REPO / "examples" / "data" / name, keep_default_na=False)
    prompts = set(derived["instruction"])
    # Every derived row comes from a first turn; the ones with a context must not lose it.
    roots = rows_with_input()
    roots = roots[roots["parent_id"] == ""]
    bare = [i for i in roots["instruction"] if i in prompts]
    assert not bare, f"{name}: instructions without their input text: {bare[:3]}"
    for row in roots.itertuples():
        assert any(row.input in p and row.instruction in p for p in prompts), (name, row.id)
