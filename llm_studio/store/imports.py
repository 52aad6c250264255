"""The dataset import service: stage -> inspect -> configure (with a preview) -> commit; plus
edit (re-configure a dataset's files) and merge (bring another dataset's files in).

Disk layout (under `<workdir>/data`):

    tmp/import-<id>/download/   what the connector fetched (zips included)
    tmp/import-<id>/files/      the dataframes, zips extracted safely
    user/<name>/                a committed dataset: its dataframes and `cfg.yaml`

A commit writes `cfg.yaml` into the staged folder, renames the folder into `user/<name>` in
one step, and then saves the record through the `DatasetRecords` the service was given; if
anything fails, what was written is removed, so neither `user/` nor the records keep a half
import. Nothing here imports torch: previews are rendered with the format training uses and
the EOS token of the backbone's tokenizer, read from its files.

Staged imports never outlive their use: a failed stage or inspect removes its folder, a new
`stage` removes those unused for STAGING_MAX_AGE_S, and the app's start-up removes them all
(`llm_studio.store.recovery`).
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any, Iterable, Mapping, Protocol

import pandas as pd

from llm_studio.atomic import write_text_atomic
from llm_studio.config.problem_types import BaseConfig
from llm_studio.config.settings import ConfigError, coerce, field_types, spec_of
from llm_studio.config.yaml_io import config_class, save_config
from llm_studio.connectors import get_connector
from llm_studio.connectors.base import DATAFRAME_SUFFIXES, ByteBudget, unique_path
from llm_studio.data.conversations import build_conversations, leaf_rows
from llm_studio.data.labels import class_labels, regression_targets
from llm_studio.data.prompt_format import Conversation, PromptFormat
from llm_studio.data.quality import check_answers
from llm_studio.data.readers import DataError, read_dataframe
from llm_studio.models.offline_backbone import resolve_backbone
from llm_studio.paths import workdir
from llm_studio.store.archives import ImportLimits, extract_zip

CONFIG_FILE = "cfg.yaml"
PENDING_MARKER = ".record-pending"  # in a dataset folder whose record is being added or removed
FALLBACK_EOS = "</s>"  # shown only when the backbone's tokenizer files are not on this machine
PREVIEW_CHARS = 2_000  # per previewed text: a huge cell must not overflow the page
STAGING_MAX_AGE_S = 6 * 3600  # a staged import unused this long is abandoned
DEFAULT_PROBLEM_TYPE = "text_causal_language_modeling"
CLASSIFICATION = "text_causal_classification_modeling"
REGRESSION = "text_causal_regression_modeling"
LABEL_TYPES = (CLASSIFICATION, REGRESSION)
DPO = "text_dpo_modeling"

# Set from the train/validation dataframe choice, not through `settings`.
_DATAFRAME_KEYS = ("train_dataframe", "validation_dataframe", "validation_strategy")


class DatasetImportError(DataError):
    """An import, edit or merge that cannot go ahead; the message says why."""


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
        answer = self.cfg.dataset.answer_column
        return (answer,) if isinstance(answer, str) else tuple(answer)

    def config_for(self, folder: Path) -> BaseConfig:
        cfg = copy.deepcopy(self.cfg)
        cfg.dataset.train_dataframe = str(Path(folder) / self.train_dataframe)
        if self.validation_dataframe:
            cfg.dataset.validation_dataframe = str(Path(folder) / self.validation_dataframe)
        return cfg


# --- names ---

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9 _.-]{0,99}$")


def validate_dataset_name(name: Any) -> str:
    """A dataset name is one safe path segment: 1-100 ASCII letters, digits, spaces and
    `_ - .`, starting with a letter, digit or `_`, without `..`, not ending in a dot or space."""
    if not isinstance(name, str) or not name.strip():
        raise DatasetImportError("dataset name: a name is required")
    if not _NAME_RE.match(name) or ".." in name or name.endswith((".", " ")):
        raise DatasetImportError(
            f"dataset name: {name!r} is not allowed; use letters, digits, spaces, '_', '-' and "
            "'.', starting with a letter, digit or '_', without '..' or '/' (at most 100 "
            "characters)"
        )
    return name


def _list_dataframes(folder: Path) -> list[str]:
    names = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(p.startswith(".") for p in rel.parts):
            continue
        if path.is_file() and not path.is_symlink() and path.suffix.lower() in DATAFRAME_SUFFIXES:
            names.append(rel.as_posix())
    return sorted(names)


def _link_tree(src: Path, dest: Path) -> None:
    """A copy of `src` at `dest` made of hard links (a real copy where links fail)."""

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dest, copy_function=link_or_copy, symlinks=False)


# --- suggestions ---

PROMPT_NAMES = ("instruction", "prompt", "question", "input", "query", "text", "context")
LABEL_PROMPT_NAMES = ("text", "prompt", "instruction", "question", "input", "sentence", "review")
ANSWER_NAMES = ("output", "response", "answer", "completion", "chosen_response", "chosen")
DPO_ANSWER_NAMES = ("chosen_response", "chosen", "output", "response", "answer")
LABEL_NAMES = ("label", "labels", "target", "class", "score", "y")
REJECTED_NAMES = ("rejected_response", "rejected", "rejected_answer", "rejected_output")
PARENT_NAMES = ("parent_id", "parent")
SYSTEM_NAMES = ("system", "system_prompt")
_VALIDATION_RE = re.compile(r"(^|[^a-z])(valid|validation|val|dev|eval)([^a-z]|$)")


def suggest_dataframes(names: Iterable[str]) -> tuple[str | None, str | None]:
    """(train, validation) guesses from file names: `train*`, and `valid*`/`val`/`dev`/`eval`."""
    names = list(names)
    if not names:
        return None, None
    stems = {n: PurePosixPath(n).stem.lower() for n in names}
    validation = next((n for n in names if _VALIDATION_RE.search(stems[n])), None)
    train = next((n for n in names if "train" in stems[n] and n != validation), None)
    if train is None:
        train = next((n for n in names if n != validation), names[0])
    return train, (validation if validation != train else None)


def suggest_columns(problem_type: str, columns: Iterable[str]) -> dict[str, Any]:
    """Column settings guessed from the column names (case-insensitive), as `settings` for
    `configure`: prompt/answer always, system/parent/rejected when a column fits."""
    columns = [str(c) for c in columns]
    lower: dict[str, str] = {}
    for c in columns:
        lower.setdefault(c.lower(), c)
    used: set[str] = set()

    def pick(candidates: Iterable[str]) -> str | None:
        for cand in candidates:
            if cand in lower and lower[cand] not in used:
                used.add(lower[cand])
                return lower[cand]
        return None

    def fallback() -> str | None:
        for c in columns:
            if c not in used and c.lower() != "id":
                used.add(c)
                return c
        return None

    labels = problem_type in LABEL_TYPES
    out: dict[str, Any] = {}
    system = pick(SYSTEM_NAMES)
    parent = pick(PARENT_NAMES) if not labels and "id" in lower else None
    rejected = pick(REJECTED_NAMES) if problem_type == DPO else None
    prompt = pick(LABEL_PROMPT_NAMES if labels else PROMPT_NAMES)
    answer_names = (
        LABEL_NAMES if labels else DPO_ANSWER_NAMES if problem_type == DPO else ANSWER_NAMES
    )
    answer = pick(answer_names)
    prompt = prompt or fallback()
    answer = answer or fallback()
    if problem_type == DPO:
        rejected = rejected or fallback()
        if rejected:
            out["rejected_answer_column"] = rejected
    if prompt:
        out["prompt_column"] = [prompt]
    if answer:
        out["answer_column"] = [answer] if labels else answer
    if system:
        out["system_column"] = system
    if parent:
        out["parent_id_column"] = parent
    return out


# --- configure helpers ---


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _column_settings(ds: Any) -> list[tuple[str, list[str]]]:
    """(setting key, columns it needs) for every column setting of a dataset section."""
    prompt = _as_list(ds.prompt_column)
    if not prompt:
        raise DatasetImportError("dataset.prompt_column: choose at least one prompt column")
    answer = _as_list(ds.answer_column)
    if not answer:
        raise DatasetImportError("dataset.answer_column: choose the answer column")
    needed = [("dataset.prompt_column", prompt), ("dataset.answer_column", answer)]
    if getattr(ds, "system_column", None):
        needed.append(("dataset.system_column", [ds.system_column]))
    if getattr(ds, "parent_id_column", None):
        needed.append(("dataset.parent_id_column", [ds.parent_id_column, "id"]))
    if hasattr(ds, "rejected_answer_column"):
        if not ds.rejected_answer_column:
            raise DatasetImportError(
                "dataset.rejected_answer_column: choose the rejected answer column"
            )
        needed.append(("dataset.rejected_answer_column", [ds.rejected_answer_column]))
    if getattr(ds, "rejected_prompt_column", None):
        needed.append(("dataset.rejected_prompt_column", [ds.rejected_prompt_column]))
    return needed


def _check_columns(df: pd.DataFrame, ds: Any, source: str) -> None:
    for key, columns in _column_settings(ds):
        for column in columns:
            if column not in df.columns:
                raise DatasetImportError(
                    f"{source}: column {column!r} ({key}) not found; "
                    f"the file has columns {list(df.columns)}"
                )


def backbone_eos_token(backbone: str) -> str | None:
    """The EOS token of the backbone's tokenizer (what `AutoTokenizer.from_pretrained(...)
    .eos_token` gives training), read from its tokenizer files so the UI needs no torch;
    None when they are not on this machine."""
    folder = Path(resolve_backbone(backbone)).expanduser()
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        eos = data.get("eos_token") if isinstance(data, dict) else None
        if isinstance(eos, dict):  # older tokenizers store an AddedToken mapping
            eos = eos.get("content")
        if isinstance(eos, str) and eos:
            return eos
    return None


def _prompt_format(cfg: BaseConfig, eos_token: str) -> PromptFormat:
    """The format training renders with (see the tasks' `PromptFormat.from_config`); label
    problems never render their answer, so it gets no EOS there either."""
    ds = cfg.dataset
    if cfg.problem_type in LABEL_TYPES:
        ds = copy.copy(ds)
        ds.add_eos_token_to_answer = False
    return PromptFormat.from_config(ds, eos_token)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value)


def _check_and_preview(
    df: pd.DataFrame, cfg: BaseConfig, source: str, n: int, eos_token: str
) -> list[PreviewSample]:
    """Check the values the problem type reads (ids and chains, labels) and render `n`
    samples; raises a DataError naming the file, column and row."""
    ds, problem_type = cfg.dataset, cfg.problem_type
    fmt = _prompt_format(cfg, eos_token)
    if problem_type in LABEL_TYPES:
        columns = _as_list(ds.answer_column)
        if problem_type == REGRESSION:
            regression_targets(df, columns, source)
        else:
            class_labels(df, columns, source, multi_label=len(columns) > 1)
        view = SimpleNamespace(
            prompt_column=ds.prompt_column,
            prompt_column_separator=ds.prompt_column_separator,
            answer_column=columns[0],
            system_column=ds.system_column,
            parent_id_column=None,
        )
        head = df.head(n)
        convs = build_conversations(head, view, source)
        samples = []
        for i, conv in enumerate(convs):
            row = head.iloc[i]
            label = (
                _cell(row[columns[0]])
                if len(columns) == 1
                else ", ".join(f"{c}={_cell(row[c])}" for c in columns)
            )
            samples.append(
                PreviewSample(fmt.render(conv, with_last_answer=False), label).shortened()
            )
        return samples

    chained = bool(ds.parent_id_column)
    frame = df if chained else df.head(n)  # chains need every row; plain rows only the first
    convs = build_conversations(frame, ds, source)  # also checks ids and chain loops
    rows = [i for i, leaf in enumerate(leaf_rows(frame, ds)) if leaf] if chained else None
    rows = (rows or list(range(len(frame))))[:n]
    eos = eos_token if fmt.eos_after_answer else ""
    samples = []
    for i in rows:
        conv: Conversation = convs[i]
        rejected = rejected_prompt = None
        if problem_type == DPO:
            rejected = _cell(frame[ds.rejected_answer_column].iloc[i]) + eos
            if ds.rejected_prompt_column:
                last = _cell(frame[ds.rejected_prompt_column].iloc[i])
                other = Conversation(conv.system, conv.prompts[:-1] + (last,), conv.answers)
                rejected_prompt = fmt.render(other, with_last_answer=False)
        prompt = fmt.render(conv, with_last_answer=False)
        sample = PreviewSample(prompt, conv.answers[-1] + eos, rejected, rejected_prompt)
        samples.append(sample.shortened())
    return samples


def _apply_settings(cfg: BaseConfig, settings: Mapping[str, Any]) -> None:
    ds = cfg.dataset
    hints = field_types(type(ds))
    fields = {f.name: f for f in dataclasses.fields(ds)}
    for raw_key, value in settings.items():
        key = raw_key[len("dataset.") :] if raw_key.startswith("dataset.") else raw_key
        if key in _DATAFRAME_KEYS:
            raise DatasetImportError(
                f"dataset.{key}: set through the train/validation dataframe choice"
            )
        if key not in fields:
            raise DatasetImportError(f"dataset.{key}: no such setting for {cfg.problem_type}")
        try:
            setattr(ds, key, coerce(f"dataset.{key}", value, hints[key], spec_of(fields[key])))
        except ConfigError as exc:
            raise DatasetImportError(str(exc)) from None


# --- the service ---


class ImportService:
    """Imports datasets into `<data_root>/user/<name>` (data_root: `<workdir>/data`, read at
    each call so `H2O_LLM_STUDIO_WORKDIR` may change) and tells `records` about them.

    `connector_options` passes constructor arguments per connector, e.g.
    `{"local": {"roots": [...]}, "kaggle": {"endpoint": "http://..."}}`.
    """

    def __init__(
        self,
        records: DatasetRecords,
        *,
        data_root: Path | None = None,
        limits: ImportLimits | None = None,
        connector_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.records = records
        self._data_root = Path(data_root) if data_root is not None else None
        self._limits = limits
        self._last_read: tuple[Any, Any] = (None, None)  # (file key, dataframe)
        self.connector_options = dict(connector_options or {})

    # --- places ---

    @property
    def limits(self) -> ImportLimits:
        return self._limits if self._limits is not None else ImportLimits.from_env()

    @property
    def data_root(self) -> Path:
        return self._data_root if self._data_root is not None else workdir() / "data"

    @property
    def datasets_root(self) -> Path:
        return self.data_root / "user"

    @property
    def staging_root(self) -> Path:
        return self.data_root / "tmp"

    def dataset_folder(self, name: str) -> Path:
        return self.datasets_root / validate_dataset_name(name)

    def check_name(self, name: Any) -> str:
        """A valid name no dataset has yet (in the records or on disk)."""
        name = validate_dataset_name(name)
        folder = self.datasets_root / name
        if self.records.name_taken(name) or folder.exists() or folder.is_symlink():
            raise DatasetImportError(
                f"dataset name: a dataset named {name!r} already exists; choose another name"
            )
        return name

    # --- stage ---

    def stage(self, connector: str, params: Mapping[str, Any]) -> StagedImport:
        """Fetch with a connector into a fresh staging folder, extract zips, list dataframes."""
        self.purge_staging(STAGING_MAX_AGE_S)
        limits = self.limits
        options = dict(self.connector_options.get(connector, {}))
        options.setdefault("max_bytes", limits.max_total_bytes)
        conn = get_connector(connector, **options)
        root = self._new_dir(self.staging_root, "import")
        download, files = root / "download", root / "files"
        try:
            paths = conn.fetch(params, download)
            files.mkdir()
            budget = ByteBudget(limits.max_total_bytes)
            for path in paths:
                rel = path.relative_to(download)
                if path.suffix.lower() == ".zip":
                    extract_zip(path, files / rel.parent, limits, budget, rel.as_posix())
                    path.unlink()
                elif path.suffix.lower() in DATAFRAME_SUFFIXES:
                    (files / rel.parent).mkdir(parents=True, exist_ok=True)
                    os.replace(path, unique_path(files / rel.parent, rel.name))
            shutil.rmtree(download, ignore_errors=True)
            dataframes = _list_dataframes(files)
            if not dataframes:
                raise DatasetImportError(
                    f"{conn.label}: no dataframe found; import a "
                    f"{', '.join(DATAFRAME_SUFFIXES)} file or a .zip of them"
                )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return StagedImport(folder=files, dataframes=dataframes, root=root, source=connector)

    def open_import(
        self, connector: str, params: Mapping[str, Any]
    ) -> tuple[StagedImport, list[DataframeInfo]]:
        """Stage and inspect; when either fails, the staged files are removed."""
        staged = self.stage(connector, params)
        try:
            return staged, self.inspect(staged)
        except BaseException:
            self.discard(staged)
            raise

    def discard(self, staged: StagedImport) -> None:
        """Remove a staged import (safe to call twice)."""
        root = Path(staged.root)
        if root != Path() and root.is_relative_to(self.staging_root):
            shutil.rmtree(root, ignore_errors=True)

    def purge_staging(self, older_than_s: float = STAGING_MAX_AGE_S) -> int:
        """Remove staged imports (and uploads waiting to be staged) unused for `older_than_s`
        seconds; 0 removes all (at start-up, when no wizard is open). Returns how many."""
        root = self.staging_root
        if not root.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        candidates = list(root.glob("import-*"))
        uploads = root / "uploads"
        if uploads.is_dir():
            candidates += list(uploads.iterdir())
        removed = 0
        for path in candidates:
            try:
                if path.lstat().st_mtime >= cutoff and older_than_s > 0:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
            except OSError:
                continue  # gone meanwhile
        return removed

    def _touch(self, files: DataFiles) -> None:
        """Mark a staged import as in use, so the age-based purge leaves it."""
        root = getattr(files, "root", None)
        if root is None:
            return
        if not Path(files.folder).is_dir():
            raise DatasetImportError(
                "the staged files are gone (unused for too long, or the app restarted); "
                "import the data again"
            )
        os.utime(root)

    # --- inspect ---

    def read(self, files: DataFiles, name: str) -> pd.DataFrame:
        """A dataframe of `files`; errors name it by its name in the dataset."""
        path = files.path(name)
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if self._last_read[0] == key:  # inspect, then configure: read and check once
            return self._last_read[1]
        try:
            df = read_dataframe(path)
        except DataError as exc:
            raise DataError(str(exc).replace(str(path), name)) from None
        self._last_read = (key, df)
        return df

    def inspect(self, files: DataFiles) -> list[DataframeInfo]:
        """Columns and rows of each dataframe; a file that cannot be read carries its error.
        Raises a DataError when no file can be read."""
        infos = []
        for name in files.dataframes:
            try:
                df = self.read(files, name)
            except DataError as exc:
                infos.append(DataframeInfo(name, 0, [], str(exc)))
            else:
                infos.append(DataframeInfo(name, len(df), [str(c) for c in df.columns]))
        errors = [i.error for i in infos if i.error]
        if len(errors) == len(infos):
            raise DatasetImportError("; ".join(e for e in errors if e))
        return infos

    suggest_dataframes = staticmethod(suggest_dataframes)
    suggest_columns = staticmethod(suggest_columns)

    # --- configure ---

    def configure(
        self,
        files: DataFiles,
        *,
        problem_type: str = DEFAULT_PROBLEM_TYPE,
        train_dataframe: str,
        validation_dataframe: str | None = None,
        settings: Mapping[str, Any] | None = None,
        preview_samples: int = 5,
        backbone: str | None = None,
    ) -> ConfiguredDataset:
        """Build the problem type's config with this dataset section, check that the columns
        exist in the train (and validation) dataframe and that their values fit the problem
        type, and render a preview. `settings` are dataset-section keys (`prompt_column`,
        `answer_column`, `system_column`, `parent_id_column`, `rejected_answer_column`, ...,
        with or without the `dataset.` prefix). The preview uses the EOS token of `backbone`
        (default: the problem type's default backbone)."""
        self._touch(files)
        try:
            cfg = config_class(problem_type)()
        except ConfigError as exc:
            raise DatasetImportError(str(exc)) from None
        if not train_dataframe:
            raise DatasetImportError("dataset.train_dataframe: choose the train dataframe")
        if train_dataframe not in files.dataframes:
            raise DatasetImportError(
                f"dataset.train_dataframe: {train_dataframe!r} is not one of {files.dataframes}"
            )
        if validation_dataframe in ("", "None"):
            validation_dataframe = None
        if validation_dataframe is not None:
            if validation_dataframe not in files.dataframes:
                raise DatasetImportError(
                    f"dataset.validation_dataframe: {validation_dataframe!r} is not one of "
                    f"{files.dataframes}"
                )
            if validation_dataframe == train_dataframe:
                raise DatasetImportError(
                    "dataset.validation_dataframe: choose a file other than the train dataframe"
                )
        _apply_settings(cfg, settings or {})
        ds = cfg.dataset
        ds.train_dataframe = train_dataframe
        ds.validation_dataframe = validation_dataframe
        ds.validation_strategy = "custom" if validation_dataframe else "automatic"

        backbone = backbone or cfg.llm_backbone
        eos = backbone_eos_token(backbone)
        warnings = [] if eos else [
            f"The tokenizer of {backbone!r} is not on this machine: {FALLBACK_EOS!r} stands in "
            "for its EOS token in the preview."
        ]  # fmt: skip
        eos = eos or FALLBACK_EOS
        train = self.read(files, train_dataframe)
        _check_columns(train, ds, train_dataframe)
        warnings += check_answers(train, ds, train_dataframe)
        preview = _check_and_preview(train, cfg, train_dataframe, preview_samples, eos)
        validation_rows = None
        if validation_dataframe:
            validation = self.read(files, validation_dataframe)
            _check_columns(validation, ds, validation_dataframe)
            warnings += check_answers(validation, ds, validation_dataframe)
            _check_and_preview(validation, cfg, validation_dataframe, 0, eos)
            validation_rows = len(validation)
        return ConfiguredDataset(
            folder=files.folder,
            cfg=cfg,
            train_dataframe=train_dataframe,
            validation_dataframe=validation_dataframe,
            train_rows=len(train),
            validation_rows=validation_rows,
            preview=preview,
            eos_token=eos,
            warnings=warnings,
        )

    # --- commit ---

    def commit(
        self, staged: StagedImport, name: str, configured: ConfiguredDataset
    ) -> ImportedDataset:
        """Move the staged files into `user/<name>` in one rename, with `cfg.yaml`, then save
        the record; on failure nothing stays behind. The staged import is used up once the
        move is attempted (a refused name leaves it, to retry with another name)."""
        name = self.check_name(name)
        if Path(configured.folder) != Path(staged.folder):
            raise DatasetImportError("the configuration was made for other files")
        self._touch(staged)
        final = self.datasets_root / name
        try:
            save_config(configured.config_for(final), staged.folder / CONFIG_FILE)
            # Until the record is saved, the folder says so: a crash in between leaves a
            # folder that start-up recovery knows to remove.
            (staged.folder / PENDING_MARKER).touch()
            self.datasets_root.mkdir(parents=True, exist_ok=True)
            self._move_in(staged.folder, final, name)
            try:
                record = self._record(name, final, configured)
                self.records.save_record(record)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
            (final / PENDING_MARKER).unlink(missing_ok=True)
            return record
        finally:
            self.discard(staged)

    def _move_in(self, src: Path, final: Path, name: str) -> None:
        if final.exists() or final.is_symlink():
            raise DatasetImportError(f"dataset name: a dataset named {name!r} already exists")
        try:
            os.rename(src, final)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise DatasetImportError(
                    f"dataset {name!r}: cannot move the files into place ({exc.strerror})"
                ) from None
        # data/tmp on another filesystem: copy next to the target, then rename.
        partial = self._new_dir(self.datasets_root, f".{name}.partial")
        try:
            partial.rmdir()
            shutil.copytree(src, partial)
            os.rename(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise

    def _record(self, name: str, folder: Path, configured: ConfiguredDataset) -> ImportedDataset:
        validation = configured.validation_dataframe
        return ImportedDataset(
            name=name,
            problem_type=configured.problem_type,
            folder=folder,
            config_file=folder / CONFIG_FILE,
            train_dataframe=folder / configured.train_dataframe,
            train_rows=configured.train_rows,
            validation_dataframe=folder / validation if validation else None,
            validation_rows=configured.validation_rows,
            labels=configured.labels,
        )

    # --- existing datasets: edit and merge ---

    def open_dataset(self, name: str) -> DataFiles:
        """The dataframes of an existing dataset, to configure (edit) or merge from."""
        folder = self.dataset_folder(name)
        if not folder.is_dir():
            raise DatasetImportError(f"no dataset named {name!r}")
        return DataFiles(folder=folder, dataframes=_list_dataframes(folder))

    def save_edit(self, name: str, configured: ConfiguredDataset) -> ImportedDataset:
        """Rewrite an existing dataset's `cfg.yaml` from `configure(open_dataset(name), ...)`
        and update its record; the old config comes back if the update fails."""
        folder = self.open_dataset(name).folder
        if Path(configured.folder) != folder:
            raise DatasetImportError(f"the configuration was made for other files than {name!r}")
        cfg_path = folder / CONFIG_FILE
        old = cfg_path.read_text(encoding="utf-8") if cfg_path.is_file() else None
        save_config(configured.config_for(folder), cfg_path)
        try:
            record = self._record(name, folder, configured)
            self.records.update_record(record)
        except BaseException:
            if old is None:
                cfg_path.unlink(missing_ok=True)
            else:
                write_text_atomic(cfg_path, old)
            raise
        return record

    def edit(
        self,
        name: str,
        *,
        problem_type: str = DEFAULT_PROBLEM_TYPE,
        train_dataframe: str,
        validation_dataframe: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> ImportedDataset:
        configured = self.configure(
            self.open_dataset(name),
            problem_type=problem_type,
            train_dataframe=train_dataframe,
            validation_dataframe=validation_dataframe,
            settings=settings,
        )
        return self.save_edit(name, configured)

    def merge(self, target: str, source: DataFiles | str) -> list[str]:
        """Add the dataframes of `source` (a dataset name, or a staged import, which is used
        up) to dataset `target`; a clashing name gets a `_1`, `_2` ... suffix. The target's
        folder is swapped in one rename. Returns the added names; the config is unchanged
        (edit the dataset to use them)."""
        try:
            folder = self.open_dataset(target).folder
            if isinstance(source, str):
                if validate_dataset_name(source) == target:
                    raise DatasetImportError("merge: a dataset cannot be merged with itself")
                source = self.open_dataset(source)
            if not source.dataframes:
                raise DatasetImportError("merge: the source holds no dataframe")
            work = self._new_dir(self.datasets_root, f".{target}.merge")
            try:
                merged = work / "merged"
                _link_tree(folder, merged)
                added = []
                for rel in source.dataframes:
                    parts = PurePosixPath(rel)
                    dest_dir = merged.joinpath(*parts.parts[:-1])
                    dest_dir.mkdir(parents=True, exist_ok=True)
                    dest = unique_path(dest_dir, parts.name)
                    shutil.copy2(source.folder / rel, dest)
                    added.append(dest.relative_to(merged).as_posix())
                old = work / "old"
                os.rename(folder, old)
                try:
                    os.rename(merged, folder)
                except BaseException:
                    os.rename(old, folder)
                    raise
            finally:
                shutil.rmtree(work, ignore_errors=True)
            return added
        finally:
            if isinstance(source, StagedImport):
                self.discard(source)

    # --- all in one ---

    def import_dataset(
        self,
        connector: str,
        params: Mapping[str, Any],
        *,
        name: str,
        problem_type: str = DEFAULT_PROBLEM_TYPE,
        train_dataframe: str | None = None,
        validation_dataframe: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> ImportedDataset:
        """Stage, inspect, configure and commit in one call. Without `train_dataframe` the
        dataframes are guessed from their names (and the validation one with it); columns not
        given in `settings` are guessed from the train dataframe's column names."""
        name = self.check_name(name)
        staged = self.stage(connector, params)
        try:
            infos = {i.name: i for i in self.inspect(staged)}
            if train_dataframe is None:
                usable = [n for n, i in infos.items() if i.error is None]
                train_dataframe, validation_dataframe = suggest_dataframes(usable)
            info = infos.get(train_dataframe or "")
            guessed = suggest_columns(problem_type, info.columns) if info else {}
            given = {k.removeprefix("dataset."): v for k, v in (settings or {}).items()}
            configured = self.configure(
                staged,
                problem_type=problem_type,
                train_dataframe=train_dataframe or "",
                validation_dataframe=validation_dataframe,
                settings={**guessed, **given},
            )
            return self.commit(staged, name, configured)
        finally:
            self.discard(staged)

    # --- helpers ---

    @staticmethod
    def _new_dir(parent: Path, prefix: str) -> Path:
        parent.mkdir(parents=True, exist_ok=True)
        path = parent / f"{prefix}-{uuid.uuid4().hex[:12]}"
        path.mkdir(mode=0o700)
        return path
