"""Process identity and process groups, with psutil and the standard library only.

A training run is started as the leader of its own session, so its process group id is the
leader's pid and every process it starts (torchrun's workers, data loader workers, a shell's
background jobs) belongs to that group unless it deliberately leaves it.

A pid alone does not identify a process: the kernel reuses pids. A process is "ours" only if the
pid is alive AND its start time (psutil `create_time`) is the one we recorded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

import psutil

from llm_studio.experiments.status import START_TIME_TOLERANCE_S, process_alive


def start_time_of(pid: int) -> float | None:
    """The start time of process `pid` (seconds since the epoch), or None if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def group_members(pgid: int, leader_start_time: float | None = None) -> list[psutil.Process]:
    """The live (non-zombie) processes of process group `pgid`.

    The kernel does not hand out a pid while a process group still uses it as its id, so while
    members remain the group is the one we started. If a process with pid `pgid` runs with
    another start time than `leader_start_time`, the group id was reused: nothing is ours.
    """
    if leader_start_time is not None:
        started = start_time_of(pgid)
        if started is not None and abs(started - leader_start_time) >= START_TIME_TOLERANCE_S:
            return []
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) != pgid:
                continue
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        members.append(process)
    return members


def signal_group(pgid: int, sig: int, leader_start_time: float | None) -> None:
    """Send `sig` to every process of the group we started with leader `pgid`."""
    if process_alive(pgid, leader_start_time):
        # The leader is ours and alive, so the group is ours: one atomic signal for all.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        return
    for process in group_members(pgid, leader_start_time):
        _send(process, sig)


class RunProcesses:
    """Every process of one training run: the leader's process group, plus each descendant
    seen so far. torchrun starts its workers in sessions of their own, so the group alone
    misses them; once the leader is gone they cannot be found from it, hence `refresh()`
    (call it often) remembers them while the leader lives.
    """

    def __init__(self, pid: int, start_time: float | None):
        self.pid = pid  # the leader; also the process group id
        self.start_time = start_time
        self._seen: dict[int, psutil.Process] = {}

    def refresh(self) -> None:
        """Remember the leader's current descendants."""
        if not process_alive(self.pid, self.start_time):
            return
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            known = self._seen.get(child.pid)
            if known is None or not known.is_running():  # new, or a reused pid
                self._seen[child.pid] = child

    def alive(self) -> list[psutil.Process]:
        """The live (non-zombie) processes of the run."""
        found = {p.pid: p for p in group_members(self.pid, self.start_time)}
        for pid, process in list(self._seen.items()):
            if pid in found:
                continue
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    found[pid] = process
                    continue
            except psutil.Error:
                pass
            del self._seen[pid]
        return list(found.values())

    def signal(self, sig: int) -> None:
        """Send `sig` to the whole group and to every descendant seen, wherever it went."""
        self.refresh()
        signal_group(self.pid, sig, self.start_time)
        for process in list(self._seen.values()):
            _send(process, sig)

    def wait_gone(self, timeout_s: float, reap: subprocess.Popen | None = None) -> bool:
        """Wait until no process of the run lives; True if none does by `timeout_s`.

        `reap` is the leader when it is our child: it is reaped, so it does not stay a zombie.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if reap is not None:
                reap.poll()
            if not self.alive():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def _send(process: psutil.Process, sig: int) -> None:
    try:
        if process.is_running():  # compares the start time: never signal a reused pid
            process.send_signal(sig)
    except psutil.Error:
        pass


def signal_name(returncode: int | None) -> str:
    """'killed by SIGKILL' or 'exit code 3' for a Popen return code; '' when unknown."""
    if returncode is None:
        return ""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def detect_gpu_count() -> int:
    """The number of GPUs `nvidia-smi -L` lists; 0 when it is missing or fails.

    Deliberately not torch.cuda.device_count(): the UI process must not import torch.
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        result = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return 0
    if result.returncode != 0:
        return 0
    # MIG devices are listed as indented lines under their GPU; count whole GPUs.
    return sum(1 for line in result.stdout.splitlines() if line.startswith("GPU "))
