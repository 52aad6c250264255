"""The package layering holds, and starting the UI does not load torch.

Imports point one way: ui → runner, store, connectors → training → export → models, data,
metrics → config, experiments (see docs/architecture.md). A package may import packages of its
own layer or of any layer below; packages of one layer must not import each other in a circle.
Every import in llm_studio/ is read with `ast`, function-level ones included, and so are
"llm_studio.pkg.module:Name" strings, which registries import on demand.
"""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "llm_studio"

# Package (or top-level module) of llm_studio -> layer; higher layers import lower ones.
LAYERS = {
    # Entry points: the Wave app and the prompt CLI behind prompt.py.
    "ui": 6,
    "prompt_cli": 6,
    # Launch and watch training processes; the SQLite store; where datasets come from.
    "runner": 5,
    "store": 5,
    "connectors": 5,
    "training": 4,
    # Checkpoints, zips, model cards and the Hub push: training saves checkpoints through it.
    "export": 3,
    "models": 2,
    "data": 2,
    "metrics": 2,
    # Settings, and the experiment-folder contract that training writes and the UI reads.
    "config": 1,
    "experiments": 1,
    # Helpers every layer may use: the work directory, environment settings, atomic writes, the
    # one name rule (folders and Hub repos), the version.
    "paths": 0,
    "names": 0,
    "env": 0,
    "atomic": 0,
    "__init__": 0,
}

# Justified imports against the layering: (importing file, imported package) -> why.
# Empty: the code keeps the rule everywhere.
EXCEPTIONS: dict[tuple[str, str], str] = {}

_REGISTRY_ENTRY = re.compile(r"llm_studio(?:\.\w+)+:\w+")


def package_of(module: str) -> str:
    """'llm_studio.training.loop' -> 'training'; 'llm_studio' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path, root: Path = REPO) -> list[tuple[str, int]]:
    """(module, line) for each llm_studio module the file (under `root`) imports, anywhere in it."""
    here = path.relative_to(root).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the file's own package
                base = here[: len(here) - node.level]
                found.append(
                    (".".join(base + ((node.module,) if node.module else ())), node.lineno)
                )
            else:
                found.append((node.module, node.lineno))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _REGISTRY_ENTRY.fullmatch(node.value)
        ):
            found.append((node.value.partition(":")[0], node.lineno))
    return [(m, line) for m, line in found if m == "llm_studio" or m.startswith("llm_studio.")]


def import_edges(root: Path = REPO) -> list[tuple[str, str, str]]:
    """(importing package, imported package, 'file:line') for imports across packages of the
    llm_studio/ under `root`."""
    edges = []
    for path in sorted((root / "llm_studio").rglob("*.py")):
        source = package_of(".".join(path.relative_to(root).with_suffix("").parts))
        for module, line in imported_modules(path, root):
            target = package_of(module)
            if target != source:
                edges.append((source, target, f"{path.relative_to(root)}:{line}"))
    return edges


def test_every_package_has_a_layer():
    names = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    names |= {p.stem for p in PACKAGE.glob("*.py")}
    unplaced = sorted(names - set(LAYERS))
    assert not unplaced, f"place these in LAYERS (and docs/architecture.md): {unplaced}"


def test_imports_point_down_the_layers():
    upward = []
    for source, target, where in import_edges():
        if LAYERS[target] > LAYERS[source] and (where.split(":")[0], target) not in EXCEPTIONS:
            upward.append(f"{where}: {source} (layer {LAYERS[source]}) imports {target} "
                          f"(layer {LAYERS[target]})")  # fmt: skip
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_packages_do_not_import_each_other_in_a_circle():
    graph: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for source, target, at in import_edges():
        graph[source].add(target)
        where.setdefault((source, target), at)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        cycle = err.args[1]
        # graphlib lists each node before the one that depends on (imports) it
        steps = [f"{b} imports {a} ({where[(b, a)]})" for a, b in pairwise(cycle)]
        pytest.fail("packages import each other in a circle:\n" + "\n".join(steps))


def test_the_checker_sees_function_level_relative_and_registry_imports(tmp_path):
    probe = tmp_path / "llm_studio" / "config" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "import json\n"
        "def later():\n"
        "    from llm_studio.ui import main\n"
        "    from ..training import loop\n"
        "    from . import base\n"
        "TASK = 'llm_studio.runner.runner:Runner'\n"
    )
    assert set(imported_modules(probe, tmp_path)) == {
        ("llm_studio.ui", 3),
        ("llm_studio.training", 4),
        ("llm_studio.config", 5),
        ("llm_studio.runner.runner", 6),
    }
    edges = import_edges(tmp_path)
    assert {(s, t) for s, t, _ in edges} == {
        ("config", "ui"),
        ("config", "training"),
        ("config", "runner"),
    }
    assert all(LAYERS[t] > LAYERS[s] for s, t, _ in edges)  # what the layering test reports


# Libraries of the training stack: each pulls in torch, or is only useful with it.
TRAINING_STACK = ("torch", "transformers", "peft", "accelerate", "deepspeed", "bitsandbytes")


def test_starting_the_ui_does_not_import_the_training_stack():
    """`wave run app` imports app.py; the launcher runs llm_studio.ui.launch. Every UI module is
    imported too, so a page that only its route loads cannot pull torch in at start either."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import app, llm_studio.ui, llm_studio.ui.launch\n"
        "for m in pkgutil.walk_packages(llm_studio.ui.__path__, 'llm_studio.ui.'):\n"
        "    importlib.import_module(m.name)\n"
        f"print(sorted(m for m in {TRAINING_STACK!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
