"""Run states and process liveness: the one definition the runner, the store and the UI share.

The values are the strings in status.json and in the store's `status` column, so they must never
change: existing experiment folders and databases still read.
"""

from __future__ import annotations

import enum


class RunState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"


# Waiting for, or holding, a training process.
ACTIVE = frozenset({RunState.QUEUED, RunState.RUNNING})
# Done: nothing will change the state again except a new start.
TERMINAL = frozenset({RunState.FINISHED, RunState.FAILED, RunState.STOPPED})

# psutil's create_time is exact to a clock tick; a reused pid starts much later than that.
START_TIME_TOLERANCE_S = 1.0


def process_alive(pid: int | None, start_time: float | None) -> bool:
    """True only if `pid` runs, is not a zombie, and started at `start_time`.

    An unknown start time reads as not alive. The kernel reuses pids, so a pid alone may name a
    stranger: trusting it would show a dead run as running for as long as that stranger lives,
    and let a stop signal it. A run is always started with its start time recorded (runner and
    training both write it), so only a damaged or foreign status lacks one; reading it as ended
    is the error a user can see and recover from (restart), the other is not.
    """
    if not pid or start_time is None:
        return False
    import psutil  # lazily: most readers of the folder contract never ask about liveness

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(process.create_time() - start_time) < START_TIME_TOLERANCE_S
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
