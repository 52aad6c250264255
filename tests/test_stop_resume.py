"""Stopping with SIGTERM, dying with SIGKILL, and resuming to the same weights."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, tiny_config, write_yaml
from safetensors.torch import load_file
from support.fault_plugin import FAULT_ENV, with_fault_plugin

from llm_studio.experiments.folder import ExperimentFolder

TRAINING = {
    "epochs": 2,
    "evaluation_epochs": 1.0,
    "learning_rate": 0.01,
    "lora_dropout": 0.1,  # RNG-dependent, so resuming must restore the random state too
}


def train(cfg_path, *extra, fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-Y", str(cfg_path), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=with_fault_plugin(env),
        timeout=600,
    )


@pytest.fixture
def make_run(tmp_path, tiny_model_dir, pattern_csv):
    def make(name: str, **training) -> tuple[object, ExperimentFolder]:
        cfg = tiny_config(
            tiny_model_dir,
            pattern_csv,
            tmp_path / name,
            training={**TRAINING, **training},
            augmentation={"token_mask_probability": 0.1},
            prediction={"max_length_inference": 2},
        )
        return write_yaml(tmp_path / f"{name}.yaml", cfg), ExperimentFolder(tmp_path / name)

    return make


def test_sigterm_stops_cleanly_and_resume_matches_an_uninterrupted_run(make_run):
    full_cfg, full = make_run("full")
    assert train(full_cfg).returncode == 0

    cfg, folder = make_run("stopped")
    stopped = train(cfg, fault="SIGTERM:5")
    assert stopped.returncode != 0
    status = folder.read_status()
    assert status.state == "stopped" and status.step == 5
    assert "Received SIGTERM" in folder.logs.read_text()
    assert (folder.checkpoint_dir / "model.safetensors").is_file(), "save_checkpoint last keeps it"

    resumed = train(folder.cfg_yaml, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert folder.read_status().state == "finished"
    assert "Resuming at step 5 of 18" in folder.logs.read_text()

    expected = load_file(full.adapter_dir / "adapter_model.safetensors")
    actual = load_file(folder.adapter_dir / "adapter_model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)
    full_losses = [p.value for p in full.read_charts()[0] if p.name == "train/loss"]
    resumed_losses = [p.value for p in folder.read_charts()[0] if p.name == "train/loss"]
    assert resumed_losses == pytest.approx(full_losses, rel=1e-5)


def test_sigkill_leaves_a_status_that_reads_as_failed(make_run):
    cfg, folder = make_run("killed")
    result = train(cfg, fault="SIGKILL:3")
    assert result.returncode == -9
    raw = folder.read_status()
    assert raw.state == "running", "nobody got to write anything after SIGKILL"
    assert folder.current_status().state == "failed"
    assert "Parameters:" in folder.logs.read_text(), "the log up to the kill is kept"


def test_a_crashed_run_resumes_from_its_last_validation(make_run):
    cfg, folder = make_run("crashed")
    assert train(cfg, fault="SIGKILL:12").returncode == -9
    resumed = train(folder.cfg_yaml, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming at step 9 of 18" in folder.logs.read_text()
    steps = [p.step for p in folder.read_charts()[0] if p.name == "train/loss"]
    assert steps == list(range(1, 19)), "points after the saved state are rewritten, not doubled"


def test_resume_without_saved_state_says_so(make_run):
    cfg, folder = make_run("fresh")
    result = train(cfg, "--resume")
    assert result.returncode == 1
    assert "has no saved training state yet" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_live_run_reads_as_running(tmp_path):
    from llm_studio.experiments.folder import ExperimentStatus, process_alive

    folder = ExperimentFolder(tmp_path)
    import psutil

    me = psutil.Process(os.getpid())
    folder.write_status(
        ExperimentStatus(state="running", pid=me.pid, pid_start_time=me.create_time())
    )
    assert folder.current_status().state == "running"
    # Same PID, other start time: a reused PID is not our run.
    assert not process_alive(me.pid, me.create_time() - 100)
