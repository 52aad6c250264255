"""One name rule for datasets, experiments and Hub repos (`llm_studio.names`): the same
name is accepted or refused the same way everywhere; the Hub only adds limits of its own."""

from __future__ import annotations

import pytest

from llm_studio.export.hub import HubError
from llm_studio.export.hub import check_name as check_hub_name
from llm_studio.store import InvalidNameError, dataset_dir, experiment_dir
from llm_studio.store.import_types import DatasetImportError, validate_dataset_name

GOOD = ["oasst2", "tiny-chat", "run_2024.v1", "A1"]
BAD = [
    "",
    ".",
    "..",
    "../escape",
    "a/b",
    "a\\b",
    ".hidden",
    "a..b",
    "end.",
    " padded",
    "padded ",
    "-rf",
    "a\x00b",
    "x" * 5000,
    "dаta",  # Cyrillic 'а', looks like "data"
    "naïve",
    "ﬁle",  # the 'fi' ligature
    "a;b",
    "$(reboot)",
    "`id`",
    "a|b",
    "a&&b",
    "tab\tname",
]
# Fine as a folder name, refused by the Hub's own rules (checked on top of the common one).
HUB_ONLY_REFUSES = ["my model", "_private", "a--b", "name-", "x" * 97]


def dataset_accepts(name: str) -> bool:
    try:
        validate_dataset_name(name)
    except DatasetImportError as exc:
        assert str(exc).startswith("dataset name: ")
        with pytest.raises(InvalidNameError):  # the store's folder says the same
            dataset_dir(name)
        return False
    assert dataset_dir(name).name == name
    return True


def experiment_accepts(name: str) -> bool:
    try:
        return experiment_dir(name).name == name
    except InvalidNameError:
        return False


def hub_accepts(name: str) -> bool:
    try:
        return check_hub_name(name, "model name") == name
    except HubError:
        return False


@pytest.mark.parametrize("name", GOOD + BAD, ids=repr)
def test_same_verdict_for_datasets_experiments_and_the_hub(name, monkeypatch, tmp_path):
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    expected = name in GOOD
    assert dataset_accepts(name) is expected
    assert experiment_accepts(name) is expected
    assert hub_accepts(name) is expected


@pytest.mark.parametrize("name", HUB_ONLY_REFUSES, ids=lambda n: repr(n[:20]))
def test_the_hub_adds_its_own_limits_on_top(name, monkeypatch, tmp_path):
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    assert dataset_accepts(name) and experiment_accepts(name)
    with pytest.raises(HubError, match="is not valid on the Hub"):
        check_hub_name(name, "model name")


def test_the_reason_is_the_same_wording_everywhere(monkeypatch, tmp_path):
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    reason = "'a..b' must not contain '..'"
    with pytest.raises(DatasetImportError, match=reason):
        validate_dataset_name("a..b")
    with pytest.raises(InvalidNameError, match=reason):
        experiment_dir("a..b")
    with pytest.raises(HubError, match=reason):
        check_hub_name("a..b", "model name")
