"""Atomic file writes: readers see the old file or the whole new one, never half of it.

Every write goes through `write_atomic`: the content goes to a temporary file next to the target
(`.<name>.<random>.tmp`, which recovery sweeps up after a crash), gets its mode, and is renamed
over the target. Text and JSON have their shorthands; anything else (bytes, a CSV, a pickle, a
zip, safetensors) passes a writer that fills the temporary path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Files are meant to be read by others (the UI, a user's shell); secrets pass 0o600.
READABLE = 0o644


def write_atomic(path: Path, write: Callable[[Path], object], *, mode: int = READABLE) -> None:
    """`write(tmp)` fills a temporary file next to `path`, which then replaces `path` whole.

    The temporary file is created 0600 (mkstemp) and gets `mode` only once written, so a secret
    is never readable by others, not even half written. On any error it is removed and `path`
    is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, *, mode: int = READABLE) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), mode=mode)


def write_json_atomic(path: Path, data: Any, *, indent: int | None = 1) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False))


def replace_dir(tmp: Path, dest: Path) -> None:
    """Swap a fully written folder into place, so readers never see half of one."""
    old = dest.with_name(f".{dest.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    if old.exists():
        shutil.rmtree(old)
