"""Where Settings keeps credentials: nowhere by default, the system keyring, or an explicit file."""

from __future__ import annotations

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from llm_studio.store import Store
from llm_studio.ui import secrets

KEY = "sk-secrets-test-7d1e"


class MemoryKeyring(KeyringBackend):
    """A keyring backend of the keyring API that keeps passwords in this process."""

    priority = 1

    def __init__(self):
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.passwords.get((service, username))

    def set_password(self, service, username, password):
        self.passwords[(service, username)] = password

    def delete_password(self, service, username):
        self.passwords.pop((service, username), None)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    previous = keyring.get_keyring()
    yield Store()
    keyring.set_keyring(previous)


def test_by_default_nothing_is_written(store):
    handler = secrets.current_handler(store)
    assert handler == "none"
    session: dict[str, str] = {}
    secrets.save(handler, {"OPENAI_API_KEY": KEY}, session)
    assert secrets.load(handler, session)["OPENAI_API_KEY"] == KEY
    assert not secrets.env_file().exists()
    assert secrets.load(handler, {}) == {}, "a new session (or a restart) has forgotten it"


def test_an_existing_secrets_env_keeps_working(store):
    secrets.env_file().parent.mkdir(parents=True, exist_ok=True)
    secrets.env_file().write_text(f"OPENAI_API_KEY={KEY}\n")
    assert secrets.current_handler(store) == "env_file"
    assert secrets.load(secrets.current_handler(store), {})["OPENAI_API_KEY"] == KEY


def test_the_file_is_written_only_when_chosen(store):
    secrets.save("env_file", {"HF_TOKEN": KEY}, {})
    assert secrets.env_file().read_text() == f"HF_TOKEN={KEY}\n"
    assert secrets.env_file().stat().st_mode & 0o777 == 0o600


def test_keyring_keeps_the_secret_and_no_file_does(store):
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    secrets.save("keyring", {"NEPTUNE_API_TOKEN": KEY}, {})
    assert backend.passwords == {(secrets.KEYRING_SERVICE, "NEPTUNE_API_TOKEN"): KEY}
    assert secrets.load("keyring", {})["NEPTUNE_API_TOKEN"] == KEY
    assert not secrets.env_file().exists()


def test_keyring_without_a_backend_says_so_and_saves_nothing(store):
    keyring.set_keyring(fail.Keyring())
    with pytest.raises(secrets.SecretsError, match="No system keyring was found"):
        secrets.save("keyring", {"OPENAI_API_KEY": KEY}, {})
    assert not secrets.env_file().exists()
