"""The rows of the store as records: one dataclass per table, one field per column."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DatasetRecord:
    """One imported dataset. Paths are stored as given: relative ones are relative to the workdir
    (see `llm_studio.store.db.resolve`)."""

    name: str
    path: str
    config_file: str
    problem_type: str
    train_dataframe: str
    validation_dataframe: str | None = None
    train_rows: int | None = None
    validation_rows: int | None = None
    id: int = 0  # 0 until stored (SQLite row ids start at 1)
    created_at: float | None = None


@dataclass
class ExperimentRecord:
    """One experiment. `pid` and `process_start_time` identify the training process while it runs
    (the start time guards against a reused pid); `status` is free text for the runner."""

    name: str
    dataset_id: int
    path: str
    problem_type: str
    config_file: str | None = None
    pid: int | None = None
    process_start_time: float | None = None
    status: str | None = None
    id: int = 0  # 0 until stored (SQLite row ids start at 1)
    created_at: float | None = None
