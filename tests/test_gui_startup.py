"""Starting and stopping the GUI. That starting it loads no torch is in test_architecture.py."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_gui_listens_on_loopback_unless_told_otherwise(monkeypatch):
    from llm_studio.ui.launch import public_address, wave_environment

    monkeypatch.delenv("H2O_WAVE_LISTEN", raising=False)
    monkeypatch.delenv("H2O_WAVE_MAX_REQUEST_SIZE", raising=False)
    assert public_address("127.0.0.1", 10101) == ("127.0.0.1", 10101)
    assert public_address("127.0.0.1", 10101, {"H2O_WAVE_LISTEN": "0.0.0.0:8080"}) == (
        "0.0.0.0",
        8080,
    )
    env = wave_environment(40001, 40002)
    # waved itself only ever listens on loopback, behind the host-checking front proxy.
    assert env["H2O_WAVE_LISTEN"] == "127.0.0.1:40001"
    assert env["H2O_WAVE_MAX_REQUEST_SIZE"] == "25MB"
    monkeypatch.setenv("H2O_WAVE_MAX_REQUEST_SIZE", "1GB")
    assert wave_environment(40001, 40002)["H2O_WAVE_MAX_REQUEST_SIZE"] == "1GB"


def test_stop_llmstudio_stops_both_processes_by_pid(tmp_path):
    import json
    import time

    import psutil
    from gui_harness import _free_port, start_launcher

    launcher, env = start_launcher(
        tmp_path, _free_port(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in launcher.stdout:
        if "LLM Studio is at" in line:
            break
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
    assert "stopped" in stop.stdout
    # The `make llmstudio` terminal ends cleanly: exit 0 and a message, not make's "Error 1".
    out, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, out[-2000:]
    assert "LLM Studio stopped" in out
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
