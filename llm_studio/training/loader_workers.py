"""DataLoader worker processes leave stopping to the trainer.

A stop signal reaches the loader's workers along with the trainer: the runner signals the run's
whole process group, torchrun signals each rank's whole session, and Ctrl-C signals the
terminal's foreground group. Under torch's own handlers a worker dies of it, and the trainer,
which was about to finish its step and save, fails with "DataLoader worker (pid …) is killed by
signal: Terminated". So a worker ignores SIGINT, and takes SIGTERM only from its parent: that is
the trainer shutting its workers down (torch's own rule; its handler exits quietly then too). A
worker whose trainer died exits by itself within seconds (torch's watchdog), and the runner's
SIGKILL after the grace period ends everything regardless.
"""

from __future__ import annotations

import os
import signal
import threading


def ignore_stop_signals(worker_id: int) -> None:
    """A DataLoader `worker_init_fn`: SIGINT ignored, SIGTERM obeyed from the parent only."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    # SIGTERM stays pending (blocked in every thread; threads started later inherit the mask)
    # until the thread below takes it with its sender's pid, which a Python handler never sees.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(
        target=_exit_on_sigterm_from, args=(parent,), name="sigterm-from-parent", daemon=True
    ).start()


def _exit_on_sigterm_from(parent: int) -> None:
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid == parent or os.getppid() != parent:  # shut down, or orphaned
            os._exit(0)
