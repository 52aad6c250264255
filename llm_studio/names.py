"""The one rule for names that become folder names: datasets (`data/user/<name>`) and
experiments (`output/user/<name>`). The Hub's repo names add the Hub's own limits on top
(`llm_studio.export.hub.check_repo_name`). Standard library only: the UI imports this."""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 100
_ALLOWED = re.compile(r"[A-Za-z0-9 _.\-]+")


def name_problem(name: object) -> str | None:
    """Why `name` is not one safe path segment, as the end of a sentence that starts with what
    it names (e.g. "'a/b' must be a single folder name ..."); None when it is one.

    Allowed: 1-100 ASCII letters, digits, spaces, '-', '_' and '.', starting with a letter,
    digit or '_' (so no '.', '..', hidden or option-like names), without '..', and not ending
    in a space or '.'.
    """
    if not isinstance(name, str) or not name:
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"{name[:40]!r}... is too long ({len(name)} characters, at most {MAX_NAME_LENGTH})"
    if "/" in name or "\\" in name:
        return f"{name!r} must be a single folder name, without '/' or '\\'"
    if name.startswith("."):
        return f"{name!r} must not start with '.'"
    if name != name.strip():
        return f"{name!r} must not start or end with a space"
    if not _ALLOWED.fullmatch(name):
        return f"{name!r} may only contain letters, digits, spaces, '-', '_' and '.'"
    if name.startswith("-"):
        return f"{name!r} must start with a letter, a digit or '_'"
    if ".." in name:
        return f"{name!r} must not contain '..'"
    if name.endswith("."):
        return f"{name!r} must not end with '.'"
    return None
