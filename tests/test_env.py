"""LLM Studio's environment variables: H2O_LLM_STUDIO_X, with the old LLM_STUDIO_X still read."""

from __future__ import annotations

import logging

import pytest

from llm_studio import env
from llm_studio.connectors.local import ROOTS_ENV, local_roots
from llm_studio.env import setting_env


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(env, "_warned", set())  # each test sees the first use of an old name


def test_the_new_name_wins_over_the_old_one(tmp_path, monkeypatch, recwarn):
    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir(), old.mkdir()
    monkeypatch.setenv("H2O_LLM_STUDIO_LOCAL_ROOTS", str(new))
    monkeypatch.setenv("LLM_STUDIO_LOCAL_ROOTS", str(old))
    assert ROOTS_ENV == "H2O_LLM_STUDIO_LOCAL_ROOTS"
    assert local_roots() == [new.resolve()]
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_the_old_name_still_works_and_warns_once(tmp_path, monkeypatch, caplog):
    """LLM_STUDIO_LOCAL_ROOTS, set by a script written for an earlier release, still takes effect,
    with a warning naming the variable to use instead."""
    old = tmp_path / "old"
    old.mkdir()
    monkeypatch.delenv("H2O_LLM_STUDIO_LOCAL_ROOTS", raising=False)
    monkeypatch.setenv("LLM_STUDIO_LOCAL_ROOTS", str(old))
    with caplog.at_level(logging.WARNING, logger="llm_studio"):
        with pytest.warns(DeprecationWarning, match="set H2O_LLM_STUDIO_LOCAL_ROOTS instead"):
            assert local_roots() == [old.resolve()]
        local_roots()  # a second read does not repeat the warning
    warned = [r for r in caplog.records if "LLM_STUDIO_LOCAL_ROOTS is deprecated" in r.message]
    assert len(warned) == 1


def test_unset_reads_none_and_only_studio_names_are_read():
    assert setting_env("H2O_LLM_STUDIO_NOT_A_SETTING", {}) is None
    assert setting_env("H2O_LLM_STUDIO_PORT", {"H2O_LLM_STUDIO_PORT": "9"}) == "9"
    with pytest.raises(ValueError, match="start with H2O_LLM_STUDIO_"):
        setting_env("LLM_STUDIO_PORT")
