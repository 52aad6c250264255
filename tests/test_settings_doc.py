"""docs/settings.md lists every setting with the test that shows its effect, and is current."""

from __future__ import annotations

import ast
import importlib.util

from conftest import REPO
from settings_coverage import COVERAGE

from llm_studio.config.problem_types import PROBLEM_TYPES
from llm_studio.config.yaml_io import iter_settings


def declared_keys() -> set[str]:
    return {key for cls in PROBLEM_TYPES.values() for key, *_ in iter_settings(cls())}


def test_every_setting_has_a_covering_test():
    missing = declared_keys() - set(COVERAGE)
    assert not missing, f"settings without a test in tests/settings_coverage.py: {sorted(missing)}"


def test_every_named_test_exists():
    for key, where in COVERAGE.items():
        if where.startswith("pending:"):
            continue
        path, _, name = where.partition("::")
        tree = ast.parse((REPO / path).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in names, f"{key}: {where} does not exist"


def test_settings_doc_is_generated_and_current():
    spec = importlib.util.spec_from_file_location(
        "generate_settings_doc", REPO / "scripts" / "generate_settings_doc.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (REPO / "docs" / "settings.md").read_text()
    assert current == module.render(), "run: python scripts/generate_settings_doc.py"
