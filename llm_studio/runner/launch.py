"""Starting a training process: its command line and environment, and the child itself, the
leader of a session of its own whose raw output goes to `<folder>/process.log`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from llm_studio.runner.run_env import training_environment

PROCESS_LOG = "process.log"


def training_command(
    python: str, repo_root: Path, config_file: str | os.PathLike[str], gpus: Sequence[str]
) -> list[str]:
    """`train.py -Y <config>` under torchrun on `gpus`, or plainly on the CPU. No secrets."""
    train_py = str(repo_root / "train.py")
    if gpus:
        return [
            python,
            "-m",
            "torch.distributed.run",  # what the `torchrun` script runs
            "--standalone",  # one node, a free rendezvous port: runs on other GPUs coexist
            f"--nproc_per_node={len(gpus)}",
            train_py,
            "-Y",
            str(config_file),
        ]
    return [python, train_py, "-Y", str(config_file)]


def child_environment(
    extra: Mapping[str, str], config_file: Path, gpus: Sequence[str]
) -> dict[str, str]:
    """The environment of a run on `gpus`: this process's, plus the secrets of `extra` its
    config uses."""
    # Only the secrets this run uses (Neptune, GPT metric, Hub backbone): see run_env.
    env = training_environment(os.environ, extra, config_file)
    env["PYTHONUNBUFFERED"] = "1"
    # GPUs are handed out here; a CPU run must not touch (busy) GPUs at all.
    env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


def start_training_process(
    command: list[str], cwd: Path, env: dict[str, str], folder: Path
) -> subprocess.Popen:
    """Start `command` as the leader of a new session (so its process group can be signalled
    as one), its stdout and stderr in `folder/process.log`. Raises OSError."""
    with open(folder / PROCESS_LOG, "wb") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
