"""Upload: files the web server already received (the UI passes their local paths)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_studio.connectors.base import (
    Connector,
    ConnectorError,
    Param,
    copy_file,
    safe_file_name,
    unique_path,
)


class UploadConnector(Connector):
    """params: `paths` (a list of local paths, or one path), optional `names` (the names the
    user uploaded them as, same order; default: the paths' names) and `move` (take the files
    instead of copying them, for uploads the server keeps in a temporary folder)."""

    name = "upload"
    label = "Upload"
    params = (Param("paths", "Files", tip="Drop a .csv, .pq/.parquet, .json/.jsonl or .zip."),)

    def fetch(self, params: Mapping[str, Any], staging_dir: Path) -> list[Path]:
        raw = params.get("paths", params.get("path"))
        if raw is None or raw == "" or raw == []:
            raise ConnectorError("Upload: no file was uploaded")
        paths = [raw] if isinstance(raw, (str, Path)) else list(raw)
        names = params.get("names") or [None] * len(paths)
        if len(names) != len(paths):
            raise ConnectorError("Upload: `names` must give one name per uploaded file")
        move = bool(params.get("move", False))
        staging_dir.mkdir(parents=True, exist_ok=True)
        budget = self._budget()
        out = []
        for path, name in zip(paths, names, strict=True):
            src = Path(path)
            shown = name or src.name
            file_name = safe_file_name(shown, "Upload")
            if not src.is_file():
                raise ConnectorError(f"Upload: {shown!r} was not received (no such file)")
            dest = unique_path(staging_dir, file_name)
            if move:
                budget.take(src.stat().st_size, f"Upload {shown!r}")
                shutil.move(src, dest)
            else:
                copy_file(src, dest, budget, f"Upload {shown!r}")
            out.append(dest)
        return out
