"""The import service wired to the SQLite store (records) for the UI and the default datasets."""

from __future__ import annotations

from dataclasses import replace

from llm_studio.connectors import local_roots
from llm_studio.connectors.local import ROOTS_ENV
from llm_studio.store import DatasetRecord, Store
from llm_studio.store.import_types import ImportedDataset
from llm_studio.store.imports import ImportService


class StoreRecords:
    """The import service's record callbacks, kept in the SQLite store."""

    def __init__(self, store: Store):
        self.store = store

    def name_taken(self, name: str) -> bool:
        return self.store.get_dataset_by_name(name) is not None

    @staticmethod
    def _fields(record: ImportedDataset) -> dict:
        return dict(
            name=record.name,
            path=str(record.folder),
            config_file=str(record.config_file),
            problem_type=record.problem_type,
            train_dataframe=str(record.train_dataframe),
            validation_dataframe=(
                str(record.validation_dataframe) if record.validation_dataframe else None
            ),
            train_rows=record.train_rows,
            validation_rows=record.validation_rows,
        )

    def save_record(self, record: ImportedDataset) -> None:
        self.store.add_dataset(DatasetRecord(**self._fields(record)))

    def update_record(self, record: ImportedDataset) -> None:
        current = self.store.get_dataset_by_name(record.name)
        assert current is not None  # Edit dataset opens from the dataset's row
        self.store.update_dataset(replace(current, **self._fields(record)))


def import_service(store: Store) -> ImportService:
    return ImportService(StoreRecords(store))


def local_roots_note() -> str:
    """Markdown naming the folders a Local import may read, and how to change them."""
    roots = ", ".join(f"`{root}`" for root in local_roots())
    return (
        f"Local import reads files only under {roots}. To allow other folders, set "
        f"`{ROOTS_ENV}` (folders separated by `:`) before starting LLM Studio."
    )
