"""Credentials from the Settings page, kept by the handler the user picks.

- "none": only for this browser session (in memory), never written anywhere.
- "env_file": `<workdir>/data/dbs/secrets.env`, a KEY=value file readable only by its owner.
- "keyring": the OS keyring, when the `keyring` package finds one.
Values are never logged and never rendered back into a page.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from llm_studio.paths import workdir

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AWS access key",
    "AWS_SECRET_ACCESS_KEY": "AWS secret key",
    "KAGGLE_USERNAME": "Kaggle username",
    "KAGGLE_KEY": "Kaggle secret key",
    "HF_TOKEN": "Hugging Face API token",
    "OPENAI_API_KEY": "OpenAI API key",
    "NEPTUNE_API_TOKEN": "Neptune API token",
}
HANDLERS = {"none": "Do not save (this session only)", "env_file": "Local file (owner-only)"}
KEYRING_SERVICE = "llm-studio"


def keyring_available() -> bool:
    if importlib.util.find_spec("keyring") is None:
        return False
    import keyring

    return "fail" not in type(keyring.get_keyring()).__module__


def handlers() -> dict[str, str]:
    out = dict(HANDLERS)
    if keyring_available():
        out["keyring"] = "OS keyring"
    return out


def env_file() -> Path:
    return workdir() / "data" / "dbs" / "secrets.env"


def _read_env_file() -> dict[str, str]:
    path = env_file()
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and key in SECRETS:
            values[key] = value
    return values


def _write_env_file(values: dict[str, str]) -> None:
    path = env_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secrets.", suffix=".tmp")  # 0600
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(f"{k}={v}\n" for k, v in sorted(values.items()) if v))
    os.replace(tmp, path)


def save(handler: str, values: dict[str, str], session: dict[str, str]) -> None:
    """Store non-empty `values`; `session` is the in-memory dict of the "none" handler."""
    values = {k: v for k, v in values.items() if k in SECRETS and v}
    if handler == "none":
        session.update(values)
    elif handler == "env_file":
        _write_env_file({**_read_env_file(), **values})
    elif handler == "keyring":
        import keyring

        for key, value in values.items():
            keyring.set_password(KEYRING_SERVICE, key, value)
    else:
        raise ValueError(f"unknown credential handler {handler!r}")


def load(handler: str, session: dict[str, str]) -> dict[str, str]:
    """Every known secret: the process environment, overridden by what the handler stored."""
    values = {k: os.environ[k] for k in SECRETS if os.environ.get(k)}
    if handler == "env_file":
        values.update(_read_env_file())
    elif handler == "keyring":
        import keyring

        for key in SECRETS:
            stored = keyring.get_password(KEYRING_SERVICE, key)
            if stored:
                values[key] = stored
    values.update({k: v for k, v in session.items() if v})
    return values
