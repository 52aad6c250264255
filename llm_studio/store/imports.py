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

import errno
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from llm_studio.atomic import write_text_atomic
from llm_studio.config.problem_types import DEFAULT_PROBLEM_TYPE
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import config_class, save_config
from llm_studio.connectors import get_connector
from llm_studio.connectors.base import DATAFRAME_SUFFIXES, ByteBudget, unique_path
from llm_studio.data.readers import DataError, read_dataframe
from llm_studio.paths import workdir
from llm_studio.store.archives import ImportLimits, extract_zip
from llm_studio.store.columns import (
    apply_settings,
    check_dataframe_choice,
    suggest_columns,
    suggest_dataframes,
)
from llm_studio.store.import_types import (
    CONFIG_FILE,
    FALLBACK_EOS,
    PENDING_MARKER,
    STAGING_MAX_AGE_S,
    ConfiguredDataset,
    DataFiles,
    DataframeInfo,
    DatasetImportError,
    DatasetRecords,
    ImportedDataset,
    StagedImport,
    link_tree,
    list_dataframes,
    validate_dataset_name,
)
from llm_studio.store.preview import backbone_eos_token, check_dataframe


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
            dataframes = list_dataframes(files)
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
        validation_dataframe = check_dataframe_choice(files, train_dataframe, validation_dataframe)
        apply_settings(cfg, settings or {})
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
        preview, found = check_dataframe(train, cfg, train_dataframe, preview_samples, eos)
        warnings += found
        validation_rows = None
        if validation_dataframe:
            validation = self.read(files, validation_dataframe)
            warnings += check_dataframe(validation, cfg, validation_dataframe, 0, eos)[1]
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
                record = configured.record(name, final)
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

    # --- existing datasets: edit and merge ---

    def open_dataset(self, name: str) -> DataFiles:
        """The dataframes of an existing dataset, to configure (edit) or merge from."""
        folder = self.dataset_folder(name)
        if not folder.is_dir():
            raise DatasetImportError(f"no dataset named {name!r}")
        return DataFiles(folder=folder, dataframes=list_dataframes(folder))

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
            record = configured.record(name, folder)
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
                link_tree(folder, merged)
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
