"""Creating and renaming experiments, without the UI: the Create experiment page and the kebab
menu's Rename call these, and tests call them directly.

Every function here does blocking work (the SQLite store, experiment folders, cfg.yaml), so the
UI calls them through `q.run` (a worker thread), never on its event loop.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llm_studio.config.base import BaseConfig
from llm_studio.config.grid import check_combinations, expand_grid, parse_grid
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import save_config
from llm_studio.runner.runner import Runner
from llm_studio.store.db import ExperimentRecord, NotFoundError, Store, experiment_dir


@dataclass
class ExperimentPlan:
    """The experiments one click on Run creates: checked, each with its own free folder.

    `warnings` are what the user confirms with "Run anyway"; errors never get this far (they are
    raised as ConfigError or StoreError with a message to show as is).
    """

    configs: list = field(default_factory=list)  # one config per experiment, names set
    folders: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    grid_search: bool = False

    @property
    def summary(self) -> str:
        """What the user is told after submitting a grid search."""
        count = len(self.configs)
        return f"Started a grid search of {count} experiment{'s' if count != 1 else ''}."


@dataclass
class Submitted:
    """What `submit` did: each experiment's record and whether it runs now or waits."""

    records: list[ExperimentRecord]
    states: list[str]  # "running" or "queued", per record


@dataclass
class Renamed:
    before: ExperimentRecord
    after: ExperimentRecord


def free_name(store: Store, base: str) -> str:
    """`<base>-<n>` with the smallest n no experiment uses yet: the name a new form suggests."""
    for n in range(1, 1000):
        name = f"{base}-{n}"
        if store.get_experiment_by_name(name) is None:
            return name
    return f"{base}-{int(time.time())}"


def plan(
    store: Store, cfg: BaseConfig, grid: Mapping[str, str] | None, gpu_count: int
) -> ExperimentPlan:
    """Check the experiment (or every combination of a grid search) like a YAML run would.

    `grid`: None for a single experiment, else setting key -> the values the user typed.
    Raises ConfigError (or StoreError for a bad name) naming the setting and what is wrong;
    nothing is written.
    """
    experiment_dir(cfg.experiment_name)  # the (base) name must be a valid name already
    configs = [cfg] if grid is None else expand_grid(cfg, parse_grid(cfg, dict(grid)))
    folders = []
    for one in configs:
        folder = experiment_dir(one.experiment_name)
        if store.get_experiment_by_name(one.experiment_name) or folder.exists():
            raise ConfigError(f"Experiment name {one.experiment_name!r} is taken; choose another.")
        one.output_directory = str(folder)
        folders.append(folder)
    result = check_combinations(configs, gpu_count=gpu_count)
    if result.errors:
        raise ConfigError("; ".join(result.errors))
    return ExperimentPlan(configs, folders, list(result.warnings), grid_search=grid is not None)


def submit(
    runner: Runner,
    store: Store,
    checked: ExperimentPlan,
    dataset_id: int,
    env: Mapping[str, str] | None = None,
) -> Submitted:
    """Save each config into its folder, add the experiment to the store and hand it to the
    runner, which starts it or queues it. `env` carries the secrets, to the child only."""
    records, states = [], []
    for cfg, folder in zip(checked.configs, checked.folders, strict=True):
        config_file = folder / "cfg.yaml"
        save_config(cfg, config_file)
        record = store.add_experiment(
            ExperimentRecord(
                name=cfg.experiment_name,
                dataset_id=dataset_id,
                path=str(folder),
                problem_type=cfg.problem_type,
                config_file=str(config_file),
            )
        )
        states.append(runner.submit(record, list(cfg.environment.gpus), dict(env or {})))
        records.append(record)
    return Submitted(records, states)


def rename(runner: Runner, experiment_id: int, new_name: str) -> Renamed:
    """Rename a finished, failed or stopped experiment: its record, folder and cfg.yaml move
    together (the runner holds its lock meanwhile, so the experiment cannot start in between).
    Raises NotFoundError, RunnerError or StoreError with a message to show as is."""
    before = runner.store.get_experiment(experiment_id)
    if before is None:
        raise NotFoundError(f"No experiment with id {experiment_id}.")
    return Renamed(before, runner.rename(experiment_id, new_name))
