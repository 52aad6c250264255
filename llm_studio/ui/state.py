"""Per-browser-session state, as typed objects instead of loose string keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from h2o_wave import Q

from llm_studio.config.base import BaseConfig
from llm_studio.config.problem_types import DEFAULT_PROBLEM_TYPE
from llm_studio.store.db import Store

if TYPE_CHECKING:  # the import machinery loads pandas: not at UI start-up
    from llm_studio.store.import_types import (
        ConfiguredDataset,
        DataFiles,
        DataframeInfo,
        StagedImport,
    )


@dataclass
class ImportWizard:
    """Import dataset (or Edit dataset) between its steps: source -> Configure -> check."""

    source: str = ""
    staged: StagedImport | None = None  # a new import's fetched files, not yet a dataset
    editing: str | None = None  # Edit dataset: the dataset's name
    files: DataFiles | None = None  # Edit dataset: the dataset's own files
    infos: list[DataframeInfo] = field(default_factory=list)
    name: str = ""
    problem_type: str = DEFAULT_PROBLEM_TYPE
    train: str | None = None
    validation: str | None = None
    settings: dict = field(default_factory=dict)  # column setting key -> column(s)
    configured: ConfiguredDataset | None = None  # after Configure: what Continue saves

    @property
    def data_files(self) -> DataFiles:
        """The files being configured: the dataset's own when editing, else the staged ones."""
        return self.files if self.editing else self.staged  # type: ignore[return-value]  # set with editing / by the fetch step

    def columns(self) -> list[str]:
        """The train dataframe's columns (none if it could not be read)."""
        for info in self.infos:
            if info.name == self.train and not info.error:
                return list(info.columns)
        return []


@dataclass
class PreviousExperiment:
    """The experiment a Create experiment form was copied from (New experiment)."""

    name: str
    path: str  # its folder: "Use previous experiment weights" starts from its checkpoint
    own_weights: str  # its architecture.pretrained_weights, restored when the toggle goes off


@dataclass
class ExperimentDraft:
    """The Create experiment form between its events."""

    cfg: BaseConfig  # the problem type's config dataclass
    dataset_id: int
    grid: dict | None = None  # None: a single experiment; else setting key -> values to try
    previous: PreviousExperiment | None = None


@dataclass
class ClientState:
    store: Store
    session_secrets: dict[str, str] = field(default_factory=dict)  # "do not save" credentials
    wizard: ImportWizard = field(default_factory=ImportWizard)
    draft: ExperimentDraft | None = None


def client_state(q: Q) -> ClientState:
    if q.client.state is None:
        q.client.state = ClientState(store=Store())
    return q.client.state


_runner = None


def app_runner():
    """The one runner of this app process: it owns the experiments' child processes."""
    global _runner
    if _runner is None:
        from llm_studio.runner import Runner

        _runner = Runner(Store())
        _runner.reattach()
    return _runner
