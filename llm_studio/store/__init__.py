"""The app's persistent state: SQLite records of datasets, experiments and settings, and the
folders their files live in. Imports only the standard library (the UI must not load torch)."""

from llm_studio.store.db import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Store,
    check_name,
    dataset_dir,
    datasets_root,
    db_path,
    downloads_dir,
    experiment_dir,
    experiments_root,
    resolve,
)
from llm_studio.store.errors import (
    DatasetInUseError,
    InvalidNameError,
    NameTakenError,
    NotFoundError,
    StoreError,
)
from llm_studio.store.records import DatasetRecord, ExperimentRecord

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "DatasetInUseError",
    "DatasetRecord",
    "ExperimentRecord",
    "InvalidNameError",
    "NameTakenError",
    "NotFoundError",
    "Store",
    "StoreError",
    "check_name",
    "dataset_dir",
    "datasets_root",
    "db_path",
    "downloads_dir",
    "experiment_dir",
    "experiments_root",
    "resolve",
]
