"""What the dataset import service works with: its errors, the records it hands to the store,
the files it stages and the configured dataset (with its preview samples)."""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llm_studio.config.problem_types import BaseConfig
from llm_studio.connectors.base import DATAFRAME_SUFFIXES
from llm_studio.data.readers import DataError
from llm_studio.names import name_problem

CONFIG_FILE = "cfg.yaml"
PENDING_MARKER = ".record-pending"  # in a dataset folder whose record is being added or removed
FALLBACK_EOS = "</s>"  # shown only when the backbone's tokenizer files are not on this machine
PREVIEW_CHARS = 2_000  # per previewed text: a huge cell must not overflow the page
STAGING_MAX_AGE_S = 6 * 3600  # a staged import unused this long is abandoned


class DatasetImportError(DataError):
    """An import, edit or merge that cannot go ahead; the message says why."""


def validate_dataset_name(name: Any) -> str:
    """`name` if it is a valid dataset name (the store's one rule, `llm_studio.names`);
    else a DatasetImportError saying why."""
    problem = name_problem(name)
    if problem is not None:
        raise DatasetImportError(f"dataset name: {problem}")
    return name


# --- records: what the store keeps, and how the service hands it over ---


@dataclass(frozen=True)
class ImportedDataset:
    """A committed dataset, as the service hands it to the record store."""

    name: str
    problem_type: str
    folder: Path
    config_file: Path
    train_dataframe: Path
    train_rows: int
    validation_dataframe: Path | None
    validation_rows: int | None
    labels: tuple[str, ...]  # the answer column(s): "Labels" in the dataset summary


class DatasetRecords(Protocol):
    """What the import service needs from the record store (see the module's wiring notes)."""

    def name_taken(self, name: str) -> bool: ...

    def save_record(self, record: ImportedDataset) -> None:
        """Add a new dataset; raise to refuse it (the import is then rolled back)."""

    def update_record(self, record: ImportedDataset) -> None:
        """Replace an existing dataset's record after an edit."""


class InMemoryRecords:
    """A DatasetRecords kept in a dict: for tests and scripts."""

    def __init__(self) -> None:
        self.records: dict[str, ImportedDataset] = {}

    def name_taken(self, name: str) -> bool:
        return name in self.records

    def save_record(self, record: ImportedDataset) -> None:
        if record.name in self.records:
            raise DatasetImportError(f"a dataset named {record.name!r} already exists")
        self.records[record.name] = record

    def update_record(self, record: ImportedDataset) -> None:
        if record.name not in self.records:
            raise DatasetImportError(f"no dataset named {record.name!r}")
        self.records[record.name] = record


# --- files ---


@dataclass
class DataFiles:
    """A folder of dataframes, named by their posix paths relative to it."""

    folder: Path
    dataframes: list[str]

    def path(self, name: str) -> Path:
        if name not in self.dataframes:
            raise DatasetImportError(
                f"{name!r} is not one of the dataset's dataframes {self.dataframes}"
            )
        return self.folder / name


@dataclass
class StagedImport(DataFiles):
    """Files fetched by a connector, waiting in `root` (under data/tmp) to be committed."""

    root: Path = field(default=Path())
    source: str = ""


@dataclass(frozen=True)
class DataframeInfo:
    name: str
    rows: int
    columns: list[str]
    error: str | None = None  # why the file cannot be used, naming it


@dataclass(frozen=True)
class PreviewSample:
    """One sample as the model sees it: `prompt` is the rendered text up to the answer (system
    text and earlier turns included), `answer` the target (the label(s) for classification and
    regression). DPO adds `rejected_answer`, and `rejected_prompt` when the rejected answer
    has a prompt of its own (`rejected_prompt_column`)."""

    prompt: str
    answer: str
    rejected_answer: str | None = None
    rejected_prompt: str | None = None

    @property
    def text(self) -> str:
        return self.prompt + self.answer

    def shortened(self, limit: int = PREVIEW_CHARS) -> PreviewSample:
        """The sample with each text cut to `limit` characters (its start and end kept)."""
        return PreviewSample(
            *(shorten(t, limit) for t in (self.prompt, self.answer)),
            *(None if t is None else shorten(t, limit) for t in (self.rejected_answer,
                                                                  self.rejected_prompt)),
        )  # fmt: skip


def shorten(text: str, limit: int = PREVIEW_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} [... {len(text) - 2 * half} characters not shown ...] {text[-half:]}"


@dataclass
class ConfiguredDataset:
    """A dataset section checked against its files. `cfg` holds the dataframes by their names
    relative to `folder`; `config_for(folder)` gives the config with absolute paths."""

    folder: Path
    cfg: BaseConfig
    train_dataframe: str
    validation_dataframe: str | None
    train_rows: int
    validation_rows: int | None
    preview: list[PreviewSample]  # texts cut to PREVIEW_CHARS
    eos_token: str = FALLBACK_EOS  # the backbone's, as training will add it
    warnings: list[str] = field(default_factory=list)  # rows with empty answers, ...

    @property
    def problem_type(self) -> str:
        return self.cfg.problem_type

    @property
    def labels(self) -> tuple[str, ...]:
        answer = self.cfg.dataset.answer_column  # type: ignore[attr-defined]  # every type has one (str or list)
        return (answer,) if isinstance(answer, str) else tuple(answer)

    def config_for(self, folder: Path) -> BaseConfig:
        cfg = copy.deepcopy(self.cfg)
        cfg.dataset.train_dataframe = str(Path(folder) / self.train_dataframe)
        if self.validation_dataframe:
            cfg.dataset.validation_dataframe = str(Path(folder) / self.validation_dataframe)
        return cfg

    def record(self, name: str, folder: Path) -> ImportedDataset:
        """The record of this dataset committed as `name` into `folder`."""
        validation = self.validation_dataframe
        return ImportedDataset(
            name=name,
            problem_type=self.problem_type,
            folder=folder,
            config_file=folder / CONFIG_FILE,
            train_dataframe=folder / self.train_dataframe,
            train_rows=self.train_rows,
            validation_dataframe=folder / validation if validation else None,
            validation_rows=self.validation_rows,
            labels=self.labels,
        )


def list_dataframes(folder: Path) -> list[str]:
    names = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(p.startswith(".") for p in rel.parts):
            continue
        if path.is_file() and not path.is_symlink() and path.suffix.lower() in DATAFRAME_SUFFIXES:
            names.append(rel.as_posix())
    return sorted(names)


def link_tree(src: Path, dest: Path) -> None:
    """A copy of `src` at `dest` made of hard links (a real copy where links fail)."""

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dest, copy_function=link_or_copy, symlinks=False)
