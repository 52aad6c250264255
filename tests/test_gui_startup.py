"""Starting and stopping the GUI. That starting it loads no torch is in test_architecture.py."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_wave_listens_on_loopback_unless_told_otherwise(monkeypatch):
    from llm_studio.ui.launch import wave_environment

    monkeypatch.delenv("H2O_WAVE_LISTEN", raising=False)
    monkeypatch.delenv("H2O_WAVE_MAX_REQUEST_SIZE", raising=False)
    env = wave_environment("127.0.0.1", 10101, 8000)
    assert env["H2O_WAVE_LISTEN"] == "127.0.0.1:10101"
    assert env["H2O_WAVE_MAX_REQUEST_SIZE"] == "25MB"
    monkeypatch.setenv("H2O_WAVE_MAX_REQUEST_SIZE", "1GB")
    assert wave_environment("127.0.0.1", 10101, 8000)["H2O_WAVE_MAX_REQUEST_SIZE"] == "1GB"


def test_stop_llmstudio_stops_both_processes_by_pid(tmp_path):
    import json
    import time

    import psutil
    from gui_harness import _free_port, start_launcher

    launcher, env = start_launcher(
        tmp_path, _free_port(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pid_file = tmp_path / "data" / "llmstudio.pids"
    deadline = time.time() + 60
    while not pid_file.is_file() and time.time() < deadline:
        time.sleep(0.2)
    pids = json.loads(pid_file.read_text())
    servers = [pids["waved"]["pid"], pids["app"]["pid"]]
    assert all(psutil.pid_exists(p) for p in servers)
    stop = subprocess.run(
        [sys.executable, "-m", "llm_studio.ui.launch", "stop"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stop.returncode == 0
    launcher.wait(timeout=30)
    deadline = time.time() + 20
    while any(_alive(p) for p in servers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in servers), "waved or the app outlived stop-llmstudio"
    assert not pid_file.exists()


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
