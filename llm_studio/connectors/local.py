"""Local: a file or folder on the server's disk, confined to the allowed roots.

The roots are the user's home and the workdir, or the colon-separated folders in
`H2O_LLM_STUDIO_LOCAL_ROOTS`. Paths are resolved (symlinks and `..` followed) before the check,
so neither a `../` nor a link can reach outside them. The suffix is checked on both a link's
name and its target (`key.csv -> id_rsa` is not a csv), and only regular files are read (a
named pipe or device would hang the import).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_studio.connectors.base import (
    IMPORT_SUFFIXES,
    Connector,
    ConnectorError,
    Param,
    copy_file,
    text_param,
    unique_path,
)
from llm_studio.env import setting_env
from llm_studio.paths import workdir

ROOTS_ENV = "H2O_LLM_STUDIO_LOCAL_ROOTS"


def local_roots() -> list[Path]:
    raw = setting_env(ROOTS_ENV)
    if raw is not None and raw.strip():
        candidates = [Path(p).expanduser() for p in raw.split(":") if p.strip()]
    else:
        candidates = [Path.home(), workdir()]
    roots: list[Path] = []
    for root in candidates:
        resolved = root.resolve()
        if resolved not in roots:
            roots.append(resolved)
    return roots


def resolve_inside_roots(path: str | Path, roots: list[Path] | None = None) -> Path:
    """The resolved path, or a ConnectorError when it is missing or outside every root."""
    roots = local_roots() if roots is None else roots
    text = str(path).strip()
    if not text:
        raise ConnectorError("Local: a file location is required")
    if "\x00" in text:
        raise ConnectorError("Local: the file location holds a NUL character")
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        raise ConnectorError(f"Local: {text!r} is not an absolute path")
    try:
        resolved = candidate.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise ConnectorError(f"Local: {text!r} does not exist") from None
    except (OSError, RuntimeError) as exc:  # symlink loops, permissions
        raise ConnectorError(
            f"Local: {text!r} cannot be opened ({exc.__class__.__name__})"
        ) from None
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise ConnectorError(
            f"Local: {text!r} is outside the allowed folders "
            f"({', '.join(str(r) for r in roots)}; set {ROOTS_ENV} to change them)"
        )
    return resolved


@dataclass(frozen=True)
class DirEntry:
    name: str
    path: Path
    is_dir: bool
    size: int | None  # bytes, for files


def list_dir(path: str | Path | None = None, roots: list[Path] | None = None) -> list[DirEntry]:
    """For a directory browser: the roots (path None), or the subfolders and importable files
    of a folder inside them, folders first. Hidden entries and links leading out are left out."""
    roots = local_roots() if roots is None else roots
    if path is None or str(path).strip() == "":
        return [DirEntry(str(r), r, True, None) for r in roots if r.is_dir()]
    folder = resolve_inside_roots(path, roots)
    if not folder.is_dir():
        raise ConnectorError(f"Local: {str(path)!r} is not a folder")
    entries = []
    try:
        children = sorted(folder.iterdir(), key=lambda p: p.name.lower())
    except OSError as exc:
        raise ConnectorError(f"Local: {str(path)!r} cannot be listed ({exc.strerror})") from None
    for child in children:
        if child.name.startswith("."):
            continue
        try:
            resolved = resolve_inside_roots(child, roots)
        except ConnectorError:
            continue
        if resolved.is_dir():
            entries.append(DirEntry(child.name, child, True, None))
        elif resolved.is_file() and {child.suffix.lower(), resolved.suffix.lower()} <= set(
            IMPORT_SUFFIXES
        ):
            entries.append(DirEntry(child.name, child, False, resolved.stat().st_size))
    entries.sort(key=lambda e: (not e.is_dir, e.name.lower()))
    return entries


class LocalConnector(Connector):
    """params: `path`, a file or a folder (its importable files, subfolders included, keep
    their relative place)."""

    name = "local"
    label = "Local"
    params = (Param("path", "File location", tip="A file or folder on the server."),)

    def __init__(self, max_bytes: int | None = None, roots: list[Path] | None = None) -> None:
        super().__init__(max_bytes)
        self.roots = roots

    def fetch(self, params: Mapping[str, Any], staging_dir: Path) -> list[Path]:
        roots = local_roots() if self.roots is None else self.roots
        given = text_param(params, "path", "Local: the file location")
        source = resolve_inside_roots(given, roots)
        staging_dir.mkdir(parents=True, exist_ok=True)
        budget = self._budget()
        if source.is_file():
            if source.suffix.lower() not in IMPORT_SUFFIXES:
                raise ConnectorError(
                    f"Local: {given!r} is not a supported file; use {', '.join(IMPORT_SUFFIXES)}"
                )
            return [copy_file(source, unique_path(staging_dir, source.name), budget, given)]
        if not source.is_dir():
            raise ConnectorError(f"Local: {given!r} is neither a file nor a folder")
        out = []
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or Path(name).suffix.lower() not in IMPORT_SUFFIXES:
                    continue
                file = Path(dirpath) / name
                shown = str(file)
                resolved = resolve_inside_roots(file, roots)  # a link inside may lead out
                if resolved.suffix.lower() not in IMPORT_SUFFIXES or not resolved.is_file():
                    continue  # a link to another kind of file, a pipe, a device
                rel = file.relative_to(source)
                dest_dir = staging_dir / rel.parent
                dest_dir.mkdir(parents=True, exist_ok=True)
                out.append(copy_file(resolved, unique_path(dest_dir, name), budget, shown))
        if not out:
            raise ConnectorError(
                f"Local: the folder {given!r} holds no {', '.join(IMPORT_SUFFIXES)} file"
            )
        return out
