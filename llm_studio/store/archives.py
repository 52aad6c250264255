"""Safe extraction of the zip archives an import brings in.

Every limit is checked against the archive's directory before a single byte is extracted:
member count, total uncompressed size, compression ratio (of each large member and of the
archive as a whole, so a bomb split into many small members is caught too), and unsafe
members (paths leaving the folder, links, encrypted members, over-long names). Sizes are
counted again while extracting, in case the directory lies. A refusal is one line: each kind
of problem with its first few members and a count.
"""

from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from llm_studio.connectors.base import (
    DATAFRAME_SUFFIXES,
    DEFAULT_MAX_BYTES,
    MAX_BYTES_ENV,
    ByteBudget,
    human_size,
    max_import_bytes,
    unique_path,
)
from llm_studio.data.readers import DataError, listing
from llm_studio.env import setting_env

RATIO_ENV = "H2O_LLM_STUDIO_MAX_ZIP_RATIO"
MEMBERS_ENV = "H2O_LLM_STUDIO_MAX_ZIP_MEMBERS"
NAME_MAX_BYTES = 255  # the longest file name Linux file systems take


class ArchiveError(DataError):
    """A zip archive that is refused; the message names it and its bad members."""


@dataclass(frozen=True)
class ImportLimits:
    """Caps on what an import may bring in. The ratio is checked for each member of at least
    `ratio_min_bytes` and for the archive as a whole once it holds that much."""

    max_total_bytes: int = DEFAULT_MAX_BYTES
    max_ratio: float = 100.0
    ratio_min_bytes: int = 1024 * 1024
    max_members: int = 1_000

    @classmethod
    def from_env(cls) -> ImportLimits:
        def number(env: str, default: float, kind: type) -> Any:
            raw = (setting_env(env) or "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ArchiveError(f"{env}: got {raw!r}, expected a number") from None
            if value <= 0:
                raise ArchiveError(f"{env}: got {raw!r}, expected a positive number")
            return value

        return cls(
            max_total_bytes=max_import_bytes(),
            max_ratio=number(RATIO_ENV, cls.max_ratio, float),
            max_members=number(MEMBERS_ENV, cls.max_members, int),
        )


def _shown(name: str) -> str:
    return repr(name if len(name) <= 60 else name[:57] + "...")


def _unsafe(name: str) -> str | None:
    """Why a member name is unsafe, or None."""
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        return "with an absolute path"
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "pointing outside the archive"
    if any(ord(c) < 32 for c in text):
        return "holding control characters"
    if any(len(p.encode("utf-8")) > NAME_MAX_BYTES for p in parts):
        return f"with a name longer than {NAME_MAX_BYTES} bytes"
    return None


class _Problems:
    """Problems grouped by kind, in the order found; rendered as one line."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[str]] = {}

    def add(self, kind: str, item: str = "") -> None:
        self.kinds.setdefault(kind, []).append(item)

    def raise_if_any(self, label: str) -> None:
        if not self.kinds:
            return
        clauses = []
        for kind, items in self.kinds.items():
            named = [i for i in items if i]
            clauses.append(f"{kind}: {listing(named)}" if named else kind)
        raise ArchiveError(f"{label}: {'; '.join(clauses)}; refused")


def check_zip(
    zf: zipfile.ZipFile, limits: ImportLimits, budget: ByteBudget, label: str
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The dataframe members to extract, after every check on the directory; raises an
    ArchiveError listing all problems."""
    infos = zf.infolist()
    problems = _Problems()
    if len(infos) > limits.max_members:
        problems.add(
            f"{len(infos)} members, more than the limit of {limits.max_members} "
            f"(set {MEMBERS_ENV} to change it)"
        )
    total = packed = 0
    seen: set[tuple[str, ...]] = set()
    wanted = []
    for info in infos:
        parts = _member_parts(info, problems)
        if parts is None:
            continue
        if parts in seen:
            problems.add("members that appear twice", _shown(info.filename))
        seen.add(parts)
        total += info.file_size
        packed += info.compress_size
        _check_member_ratio(info, limits, problems)
        if _is_dataframe(parts):
            wanted.append((info, parts))
    _check_archive_size(total, packed, limits, budget, problems)
    problems.raise_if_any(label)
    return wanted


def _member_parts(info: zipfile.ZipInfo, problems: _Problems) -> tuple[str, ...] | None:
    """The member's path as folder names, or None for a folder or a member refused (and added
    to `problems`)."""
    name = info.filename
    why = _unsafe(name)
    if why:
        problems.add(f"members {why}", _shown(name))
        return None
    if stat.S_ISLNK(info.external_attr >> 16):
        problems.add("members that are links", _shown(name))
        return None
    if info.flag_bits & 0x1:
        problems.add("encrypted members (use an unencrypted zip)", _shown(name))
        return None
    parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    if info.is_dir() or not parts:
        return None
    return parts


def _check_member_ratio(info: zipfile.ZipInfo, limits: ImportLimits, problems: _Problems) -> None:
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size >= limits.ratio_min_bytes and ratio > limits.max_ratio:
        problems.add(
            f"members expanding more than {limits.max_ratio:.0f} times (possible zip bomb)",
            f"{_shown(info.filename)} ({ratio:.0f} times)",
        )


def _is_dataframe(parts: tuple[str, ...]) -> bool:
    """A file an import reads (by suffix), outside hidden folders and macOS resource forks."""
    hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
    return not hidden and PurePosixPath(parts[-1]).suffix.lower() in DATAFRAME_SUFFIXES


def _check_archive_size(
    total: int, packed: int, limits: ImportLimits, budget: ByteBudget, problems: _Problems
) -> None:
    """The archive as a whole: what it expands to, against the byte budget and the ratio."""
    if budget.used + total > limits.max_total_bytes:
        problems.add(
            f"would expand to {human_size(total)}, more than the limit of "
            f"{human_size(limits.max_total_bytes)} (possible zip bomb; set {MAX_BYTES_ENV} "
            "to change the limit)"
        )
    overall = total / max(packed, 1)
    if total >= limits.ratio_min_bytes and overall > limits.max_ratio:
        problems.add(
            f"expands {overall:.0f} times in all, more than the limit of "
            f"{limits.max_ratio:.0f} (possible zip bomb; set {RATIO_ENV} to change it)"
        )


def extract_zip(
    archive: Path, dest: Path, limits: ImportLimits, budget: ByteBudget, label: str
) -> list[Path]:
    """Extract the dataframes of a zip into `dest` after `check_zip` passed."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{label}: not a valid zip archive ({exc})") from None
    with zf:
        wanted = check_zip(zf, limits, budget, label)
        out = []
        root = dest.resolve()
        for info, parts in wanted:
            out.append(_extract_member(zf, info, parts, dest, root, budget, label))
        return out


def _extract_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    parts: tuple[str, ...],
    dest: Path,
    root: Path,
    budget: ByteBudget,
    label: str,
) -> Path:
    shown = _shown(info.filename)
    written = 0
    try:
        folder = dest.joinpath(*parts[:-1])
        folder.mkdir(parents=True, exist_ok=True)
        target = unique_path(folder, parts[-1])
        if not target.resolve().is_relative_to(root):
            raise ArchiveError(f"{label}: member {shown} leaves the folder; refused")
        with zf.open(info) as src, open(target, "xb") as fh:
            while chunk := src.read(1024 * 1024):
                written += len(chunk)
                budget.take(len(chunk), label)
                if written > info.file_size:
                    raise ArchiveError(
                        f"{label}: member {shown} is larger than its directory entry says; "
                        "refused as a possible zip bomb"
                    )
                fh.write(chunk)
    except DataError:
        raise
    except OSError as exc:  # strerror only: the message must not show server paths
        raise ArchiveError(
            f"{label}: member {shown} cannot be extracted ({exc.strerror or type(exc).__name__})"
        ) from None
    except (zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        raise ArchiveError(f"{label}: member {shown} cannot be extracted ({exc})") from None
    return target
