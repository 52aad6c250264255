"""Keep the records and the folders in step across crashes (`kill -9`, power loss).

Each operation that changes both is ordered so that a crash at any point leaves a state
`recover` (run at the app's start-up) can finish or undo:

- import: the staged folder, marked `.record-pending`, is renamed into `data/user/<name>` in
  one step, then the record is saved and the mark removed.
- dataset delete (`delete_datasets`): the folders are marked, the records go in one
  transaction, then the folders are renamed aside (`.trash-*`) and removed.
  At start-up a marked folder is unmarked if its record exists and removed if not; trash is
  removed. A folder that is neither marked nor recorded is left alone (never the app's doing:
  a database reset by hand, say) and logged.
- merge: the merged copy is swapped in by two renames inside `.<name>.merge-*`; start-up puts
  back whichever complete folder is missing and removes the work folder.
- experiment rename (`rename_experiment`): a journal names the old and new name before the
  folder moves; start-up rolls forward if the record already has the new name, else back.

Experiment folders without a record are left alone: train.py writes those on its own.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from llm_studio import paths
from llm_studio.atomic import write_text_atomic
from llm_studio.store.db import (
    DatasetRecord,
    ExperimentRecord,
    Store,
    check_name,
    datasets_root,
    experiment_dir,
    experiments_root,
    resolve,
)

JOURNAL_PREFIX = ".rename-"
PENDING_MARKER = ".record-pending"  # the same as llm_studio.store.imports.PENDING_MARKER


def _remove_aside(folder: Path) -> None:
    """Remove a folder by first renaming it aside, so it is never seen half-deleted."""
    if not folder.exists():
        return
    trash = folder.with_name(f".trash-{uuid.uuid4().hex[:12]}")
    folder.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def delete_datasets(store: Store, ids: Iterable[int]) -> list[DatasetRecord]:
    """Delete datasets (all or none, see `Store.delete_datasets`), then their folders."""
    ids = list(ids)
    root = datasets_root().resolve()
    folders = []
    for record in filter(None, (store.get_dataset(int(i)) for i in ids)):
        folder = resolve(record.path)
        if folder.is_dir() and folder.resolve().parent == root:  # only inside data/user
            folders.append(folder)
    for folder in folders:
        (folder / PENDING_MARKER).touch()
    try:
        deleted = store.delete_datasets(ids)
    except BaseException:
        for folder in folders:
            (folder / PENDING_MARKER).unlink(missing_ok=True)
        raise
    for folder in folders:
        _remove_aside(folder)
    return deleted


def rename_experiment(store: Store, record: ExperimentRecord, new_name: str) -> ExperimentRecord:
    """Rename an experiment's folder, cfg.yaml and record; crash-safe through a journal.
    The caller checks that the experiment is not running and the name is free."""
    new_name = check_name(new_name, "experiment name")
    old_folder, new_folder = resolve(record.path), experiment_dir(new_name)
    journal = experiments_root() / f"{JOURNAL_PREFIX}{record.id}.json"
    entry = {"id": record.id, "old": [record.name, str(old_folder)]}
    entry["new"] = [new_name, str(new_folder)]
    write_text_atomic(journal, json.dumps(entry))
    try:
        old_folder.rename(new_folder)
        try:
            _write_names(new_folder, new_name)
            updated = store.update_experiment_fields(
                record.id,
                name=new_name,
                path=str(new_folder),
                config_file=str(new_folder / "cfg.yaml"),
            )
        except BaseException:
            new_folder.rename(old_folder)  # nothing half-renamed
            _write_names(old_folder, record.name)
            raise
    finally:
        journal.unlink(missing_ok=True)
    return updated


def _write_names(folder: Path, name: str) -> None:
    from llm_studio.config.yaml_io import load_config, save_config

    config_file = folder / "cfg.yaml"
    if not config_file.is_file():
        return
    cfg, _ = load_config(config_file)
    if cfg.experiment_name != name or cfg.output_directory != str(folder):
        cfg.experiment_name, cfg.output_directory = name, str(folder)
        save_config(cfg, config_file)


def recover(store: Store) -> list[str]:
    """Finish or undo what a crash interrupted; returns what was done, for the log. Run it
    at start-up, before any import or training starts."""
    done = []
    done += _recover_renames(store)
    done += _recover_datasets(store)
    staging = paths.workdir() / "data" / "tmp"
    if staging.is_dir():
        from llm_studio.store.imports import ImportService  # pandas: only when needed

        removed = ImportService(None, data_root=staging.parent).purge_staging(0)  # type: ignore[arg-type]
        if removed:
            done.append(f"removed {removed} unfinished staged import(s)")
    return done


def _recover_datasets(store: Store) -> list[str]:
    root = datasets_root()
    if not root.is_dir():
        return []
    done = []
    known = {resolve(r.path).name for r in store.list_datasets()}
    for child in sorted(root.iterdir()):
        name = child.name
        if name.startswith(".") and ".merge-" in name:
            target = root / name[1:].split(".merge-")[0]
            for part in ("merged", "old"):  # merged is complete once old was moved aside
                if not target.exists() and (child / part).is_dir():
                    (child / part).rename(target)
                    done.append(f"finished the merge into {target.name}")
            shutil.rmtree(child, ignore_errors=True)
        elif name.startswith(".") and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)  # partial copies, trash
        elif (child / PENDING_MARKER).exists():
            if name in known:
                (child / PENDING_MARKER).unlink()
                done.append(f"kept {name}: its record was saved (or its delete refused)")
            else:
                shutil.rmtree(child, ignore_errors=True)
                done.append(f"removed {name}: an import or delete that did not finish")
        elif child.is_dir() and name not in known:
            done.append(f"left {child} alone: it has no record in the database")
    return done


def _recover_renames(store: Store) -> list[str]:
    root = experiments_root()
    if not root.is_dir():
        return []
    done = []
    for partial in root.glob(f".{JOURNAL_PREFIX}*.tmp"):  # a journal killed while written
        partial.unlink(missing_ok=True)
    for journal in sorted(root.glob(f"{JOURNAL_PREFIX}*.json")):
        try:
            entry = json.loads(journal.read_text(encoding="utf-8"))
            (old_name, old_path), (new_name, new_path) = entry["old"], entry["new"]
            record = store.get_experiment(int(entry["id"]))
        except (OSError, ValueError, KeyError, TypeError):
            journal.unlink(missing_ok=True)  # written atomically: unreadable means not ours
            continue
        if record is not None:
            forward = record.name == new_name
            name, want, other = (
                (new_name, Path(new_path), Path(old_path))
                if forward
                else (old_name, Path(old_path), Path(new_path))
            )
            if not want.exists() and other.exists():
                other.rename(want)
            if want.exists():
                for partial in want.glob(".cfg.yaml.*.tmp"):
                    partial.unlink(missing_ok=True)
                _write_names(want, name)
            done.append(f"{'finished' if forward else 'undid'} renaming {old_name} to {new_name}")
        journal.unlink(missing_ok=True)
    return done
