"""The container's main process: SIGTERM (`docker stop`) ends the GUI and every running
experiment within docker's 10 s, and leaves no experiment `running` in the store."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from conftest import REPO, pattern_rows, tiny_config, write_yaml
from gui_harness import add_dataset, add_experiment

from llm_studio.runner import Runner
from llm_studio.store import Store, experiment_dir

DOCKER_STOP_GRACE_S = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.2)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # ended, not yet reaped
    except psutil.NoSuchProcess:
        return True


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_stops_the_gui_and_a_running_experiment_within_docker_grace(
    tmp_path, monkeypatch, tiny_model_dir
):
    work = tmp_path / "work"
    port = _free_port()
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(work))
    monkeypatch.setenv("H2O_WAVE_LISTEN", f"127.0.0.1:{port}")
    monkeypatch.setenv("H2O_LLM_STUDIO_PORT", str(port))
    monkeypatch.delenv("H2O_WAVE_APP_ADDRESS", raising=False)
    entrypoint = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "docker_entrypoint.py")], cwd=REPO
    )
    try:
        _wait("the GUI did not answer", lambda: _answers(f"http://127.0.0.1:{port}/"), 120)
        _wait("the launcher wrote no PID file", (work / "data" / "llmstudio.pids").is_file, 60)
        gui_pids = json.loads((work / "data" / "llmstudio.pids").read_text())

        csv = tmp_path / "pattern.csv"
        pattern_rows(400).to_csv(csv, index=False)
        dataset = add_dataset(work, "pattern", csv, "text_causal_language_modeling")
        folder = experiment_dir("long")
        folder.mkdir(parents=True)
        cfg = tiny_config(tiny_model_dir, csv, folder, training={"epochs": 100})
        write_yaml(folder / "cfg.yaml", cfg)
        record = add_experiment(work, dataset, folder, "text_causal_language_modeling")
        store = Store()
        assert Runner(store).submit(record, gpus=[]) == "running"

        def training() -> bool:
            status = json.loads((folder / "status.json").read_text())
            assert status["state"] == "running", (folder / "process.log").read_text()[-3000:]
            return status["progress"] > 0

        _wait("the experiment did not start training", training, 120)
        trainer = store.get_experiment(record.id).pid

        start = time.monotonic()
        entrypoint.send_signal(signal.SIGTERM)
        entrypoint.wait(timeout=30)
        took = time.monotonic() - start
    finally:
        if entrypoint.poll() is None:
            entrypoint.kill()

    assert took < DOCKER_STOP_GRACE_S, f"took {took:.1f} s"
    assert entrypoint.returncode == 0
    assert _gone(trainer), "the training process outlived the container's main process"
    for name in ("app", "waved"):
        assert _gone(gui_pids[name]["pid"]), f"{name} still runs"
    assert [r.status for r in Store().list_experiments()] == ["stopped"]
    assert json.loads((folder / "status.json").read_text())["state"] == "stopped"
