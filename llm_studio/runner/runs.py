"""What the runner keeps about each experiment it handles: one waiting in the queue, or one
whose training process it watches, and how to find the live process of an experiment.

Resources are the GPUs ("gpu:<id>") or the CPU ("cpu"): a run claims all of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.experiments.status import process_alive
from llm_studio.runner import processes
from llm_studio.store.db import ExperimentRecord


def resources_of(gpus: Sequence[str]) -> frozenset[str]:
    """The resources a run on `gpus` claims: those GPUs, or the CPU when there are none."""
    return frozenset(f"gpu:{g}" for g in gpus) if gpus else frozenset({"cpu"})


@dataclass
class QueuedRun:
    """An experiment in the queue. `env` holds its secrets, in memory only."""

    experiment_id: int
    gpus: tuple[str, ...]
    env: dict[str, str]
    resume: bool = False

    @property
    def resources(self) -> frozenset[str]:
        return resources_of(self.gpus)


@dataclass
class WatchedRun:
    """A training process we watch: started by us (`popen`) or re-attached after a restart."""

    experiment_id: int
    folder: ExperimentFolder
    pid: int  # the group leader; its pid is the process group id
    start_time: float | None
    gpus: tuple[str, ...]
    popen: subprocess.Popen | None = None
    stop_requested: bool = False
    kill_at: float | None = None  # time.monotonic() after which the group gets SIGKILL
    killer: threading.Thread | None = field(default=None, repr=False)
    procs: processes.RunProcesses = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.procs = processes.RunProcesses(self.pid, self.start_time)
        self.procs.refresh()

    @property
    def resources(self) -> frozenset[str]:
        return resources_of(self.gpus)

    def ended(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is not None
        return not process_alive(self.pid, self.start_time)

    def exit_info(self) -> str:
        return processes.signal_name(self.popen.returncode) if self.popen is not None else ""

    def request_stop(self, grace_s: float) -> None:
        """SIGTERM to every process of the run now; SIGKILL to what is left after `grace_s`,
        from a background thread. Asking again changes nothing."""
        if self.stop_requested:
            return
        self.stop_requested = True
        self.kill_at = time.monotonic() + grace_s
        self.procs.signal(signal.SIGTERM)
        self.killer = threading.Thread(
            target=self._kill_after_grace,
            name=f"llm-studio-stop-{self.experiment_id}",
            daemon=True,
        )
        self.killer.start()

    def _kill_after_grace(self) -> None:
        """Background: SIGKILL what is left of a stopped run's group after the grace period."""
        remaining = (self.kill_at or 0.0) - time.monotonic()
        if self.procs.wait_gone(max(0.0, remaining), self.popen):
            return
        self.procs.signal(signal.SIGKILL)
        self.procs.wait_gone(5.0, self.popen)

    def kill_now(self, wait_s: float = 10.0) -> bool:
        """SIGKILL every process of the run; True once they are gone, False if some are left
        after `wait_s`."""
        self.procs.signal(signal.SIGKILL)
        return self.procs.wait_gone(wait_s, self.popen)


def live_process(
    record: ExperimentRecord, status: ExperimentStatus | None
) -> tuple[int, float] | None:
    """(group leader pid, start time) of the experiment's live process, if any."""
    pid, start_time = record.pid, record.process_start_time
    if pid is not None and start_time is not None and process_alive(pid, start_time):
        return pid, start_time
    if (
        status is not None
        and status.pid is not None
        and process_alive(status.pid, status.pid_start_time)
    ):
        # status.json may name a torchrun worker; its group leader is the process to watch.
        try:
            leader = os.getpgid(status.pid)
        except OSError:
            return None
        if leader == os.getpgid(0):  # not a group the runner started: never ours to signal
            return None
        start = processes.start_time_of(leader)
        if start is not None:
            return leader, start
    return None
