"""What every data connector shares: its error type, its parameters, safe file names and
size-capped copies into the staging folder."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from llm_studio.data.readers import READERS, DataError
from llm_studio.env import setting_env

# What an import may bring in: the dataframes the readers know, and zip archives of them.
DATAFRAME_SUFFIXES: tuple[str, ...] = tuple(READERS)
IMPORT_SUFFIXES: tuple[str, ...] = DATAFRAME_SUFFIXES + (".zip",)

DEFAULT_MAX_BYTES = 10 * 1024**3
MAX_BYTES_ENV = "H2O_LLM_STUDIO_MAX_IMPORT_BYTES"
CHUNK = 1024 * 1024


class ConnectorError(DataError):
    """A source that cannot be fetched; the message names it (never a secret)."""


@dataclass(frozen=True)
class Param:
    """One field a connector asks for; `secret` fields are shown masked and never logged."""

    name: str
    label: str
    required: bool = True
    secret: bool = False
    tip: str = ""


def max_import_bytes() -> int:
    """The most bytes one import may bring in (downloaded or extracted)."""
    raw = (setting_env(MAX_BYTES_ENV) or "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ConnectorError(f"{MAX_BYTES_ENV}: got {raw!r}, expected a number of bytes") from None
    if value <= 0:
        raise ConnectorError(f"{MAX_BYTES_ENV}: got {raw!r}, expected a positive number")
    return value


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def safe_file_name(name: str, what: str) -> str:
    """The last path segment of `name`, checked to be an importable file name."""
    base = str(name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].strip()
    if not base or base in (".", ".."):
        raise ConnectorError(f"{what}: {name!r} does not name a file")
    if any(ord(c) < 32 or c == "\x7f" for c in base):
        raise ConnectorError(f"{what}: {name!r} holds control characters")
    base = base.lstrip(".") or base  # no hidden files in the staging folder
    check_suffix(base, what)
    return base


def check_suffix(name: str, what: str) -> None:
    suffix = Path(name).suffix.lower()
    if suffix not in IMPORT_SUFFIXES:
        raise ConnectorError(
            f"{what}: {name!r} is not a supported file; use {', '.join(IMPORT_SUFFIXES)}"
        )


def unique_path(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/stem_1.ext`, `stem_2.ext`, ... when that is taken."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while candidate.exists() or candidate.is_symlink():
        candidate = folder / f"{stem}_{n}{suffix}"
        n += 1
    return candidate


class ByteBudget:
    """Counts bytes brought into the staging folder and stops at the cap."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0

    def check(self, n: int, what: str) -> None:
        """Refuse `n` more bytes up front (a declared size) without counting them."""
        if self.used + n > self.max_bytes:
            self._refuse(what)

    def take(self, n: int, what: str) -> None:
        self.used += n
        if self.used > self.max_bytes:
            self._refuse(what)

    def _refuse(self, what: str) -> None:
        raise ConnectorError(
            f"{what}: the import is larger than the limit of {human_size(self.max_bytes)}"
            f" (set {MAX_BYTES_ENV} to change it)"
        )


def write_stream(src: BinaryIO, dest: Path, budget: ByteBudget, what: str) -> Path:
    """Copy a byte stream into a new file, within the budget; a partial file is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(dest, "xb") as out:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                budget.take(len(chunk), what)
                out.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


def copy_file(src: Path, dest: Path, budget: ByteBudget, what: str) -> Path:
    """Copy a regular file; a pipe, socket or device is refused without blocking on it."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConnectorError(f"{what}: cannot be opened ({exc.strerror})") from None
    with open(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConnectorError(f"{what}: not a regular file (a pipe or device?); refused")
        budget.check(info.st_size, what)  # refuse a too-large file before copying it
        write_stream(fh, dest, budget, what)
    shutil.copystat(src, dest)
    return dest


class Connector:
    """A data source. `fetch` puts the raw files (dataframes or zips) into `staging_dir` and
    returns their paths; it never runs a shell and never writes a secret to disk."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes if max_bytes is not None else max_import_bytes()

    def fetch(self, params: Mapping[str, Any], staging_dir: Path) -> list[Path]:
        raise NotImplementedError

    def _budget(self) -> ByteBudget:
        return ByteBudget(self.max_bytes)


def text_param(params: Mapping[str, Any], key: str, what: str, required: bool = True) -> str:
    value = params.get(key)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ConnectorError(f"{what}: expected text, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise ConnectorError(f"{what} is required")
    return value
