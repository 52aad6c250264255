"""Credentials from the Settings page, kept by the handler the user picks.

- "none" (the default): not saved; the process environment, plus what was typed in this
  browser session (in memory only).
- "keyring": the system keyring through the `keyring` package; when it finds no backend (no
  Secret Service, KWallet, macOS Keychain ...), saving says so and stores nothing.
- "env_file": `<workdir>/data/dbs/secrets.env`, a KEY=value file in clear text readable only by
  its owner: only when chosen explicitly, or when such a file exists from an earlier version.
Values are never logged and never rendered back into a page.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from llm_studio.atomic import write_text_atomic
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
HANDLERS = {
    "none": "Not saved (environment and this browser session only)",
    "keyring": "System keyring",
    "env_file": "Local file data/dbs/secrets.env (clear text, owner-only)",
}
KEYRING_SERVICE = "llm-studio"
NO_KEYRING = (
    "No system keyring was found (the keyring package has no usable backend here: it needs e.g. "
    "a Secret Service such as GNOME Keyring, KWallet, or the macOS Keychain). Nothing was saved; "
    "pick another credential handler or set the keys in the environment."
)


class SecretsError(ValueError):
    pass


def keyring_available() -> bool:
    if importlib.util.find_spec("keyring") is None:
        return False
    import keyring

    backend = keyring.get_keyring()
    return getattr(backend, "priority", 0) > 0 and "fail" not in type(backend).__module__


def handlers() -> dict[str, str]:
    return dict(HANDLERS)


def current_handler(store) -> str:
    """The handler saved in Settings; before any choice, an existing secrets.env keeps working."""
    default = "env_file" if env_file().is_file() else "none"
    handler = store.get_setting("credential_handler", default)
    return handler if handler in HANDLERS else default


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
    text = "".join(f"{k}={v}\n" for k, v in sorted(values.items()) if v)
    write_text_atomic(env_file(), text, mode=0o600)  # readable by its owner only


def save(handler: str, values: dict[str, str], session: dict[str, str]) -> None:
    """Store non-empty `values`; `session` is the in-memory dict of the "none" handler."""
    values = {k: v for k, v in values.items() if k in SECRETS and v}
    if handler == "none":
        session.update(values)
    elif handler == "env_file":
        _write_env_file({**_read_env_file(), **values})
    elif handler == "keyring":
        if not keyring_available():
            raise SecretsError(NO_KEYRING)
        import keyring

        for key, value in values.items():
            keyring.set_password(KEYRING_SERVICE, key, value)
    else:
        raise SecretsError(f"unknown credential handler {handler!r}; expected one of {HANDLERS}")


def load(handler: str, session: dict[str, str]) -> dict[str, str]:
    """Every known secret: the process environment, overridden by what the handler stored."""
    values = {k: os.environ[k] for k in SECRETS if os.environ.get(k)}
    if handler == "env_file":
        values.update(_read_env_file())
    elif handler == "keyring" and keyring_available():
        import keyring

        for key in SECRETS:
            stored = keyring.get_password(KEYRING_SERVICE, key)
            if stored:
                values[key] = stored
    values.update({k: v for k, v in session.items() if v})
    return values
