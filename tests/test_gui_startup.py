"""The GUI process starts light: importing the app pulls in neither torch nor transformers."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_app_import_does_not_load_torch():
    code = (
        "import sys, app; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_wave_listens_on_loopback_unless_told_otherwise(monkeypatch):
    from llm_studio.ui.launch import wave_environment

    monkeypatch.delenv("H2O_WAVE_LISTEN", raising=False)
    monkeypatch.delenv("H2O_WAVE_MAX_REQUEST_SIZE", raising=False)
    env = wave_environment("127.0.0.1", 10101, 8000)
    assert env["H2O_WAVE_LISTEN"] == "127.0.0.1:10101"
    assert env["H2O_WAVE_MAX_REQUEST_SIZE"] == "25MB"
    monkeypatch.setenv("H2O_WAVE_MAX_REQUEST_SIZE", "1GB")
    assert wave_environment("127.0.0.1", 10101, 8000)["H2O_WAVE_MAX_REQUEST_SIZE"] == "1GB"
