"""The container's main process (under `docker run --init`): the GUI as `make llmstudio` starts it.

On SIGTERM (`docker stop`) or SIGINT it stops the GUI and every queued or running experiment, and
leaves each of them `stopped` in the store, all within docker's 10 s grace: experiments run in
sessions of their own, so without this they would be killed with the container and stay
`running` in the store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LAUNCHER_GRACE_S = 3.0
EXPERIMENT_GRACE_S = 5.0  # train.py stops after its current step; SIGKILL after this


def stop_experiments(grace_s: float = EXPERIMENT_GRACE_S) -> list[int]:
    """Stop every experiment the store calls queued or running; returns their ids."""
    from llm_studio.runner import Runner
    from llm_studio.runner.runner import ACTIVE
    from llm_studio.store.db import Store, db_path

    if not db_path().is_file():
        return []
    runner = Runner(Store(), stop_grace_s=grace_s)
    active = [r.id for r in runner.store.list_experiments() if r.status in ACTIVE]
    for experiment_id in active:
        try:
            runner.stop(experiment_id)
        except Exception as err:  # one broken experiment must not keep the others running
            print(f"stopping experiment {experiment_id} failed: {err}", flush=True)
    deadline = time.monotonic() + grace_s + 1.0
    while runner.running_ids() and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.1)
    # A run whose process was already gone is not the runner's any more; say so in the store too.
    for record in runner.store.list_experiments():
        if record.id in active and record.status in ACTIVE:
            runner.store.update_experiment_fields(record.id, status="stopped")
    return active


def check_writable() -> str | None:
    """The mounted data/ and output/ must be writable by the container's user."""
    from llm_studio.paths import workdir

    for name in ("data", "output"):
        folder = workdir() / name
        if folder.is_dir() and not os.access(folder, os.W_OK):
            return (
                f"{folder} is not writable by the container's user (uid {os.getuid()}). Give the "
                f"host folder you mount there to that uid, e.g. `sudo chown {os.getuid()} {name}`."
            )
    return None


def main() -> int:
    problem = check_writable()
    if problem:
        print(problem, file=sys.stderr, flush=True)
        return 1
    # Imported now, not when docker's 10 s are already running.
    import llm_studio.runner  # noqa: F401
    import llm_studio.store.db  # noqa: F401

    launcher = subprocess.Popen([sys.executable, "-m", "llm_studio.ui.launch", "start"])
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    while launcher.poll() is None and not stopping:
        time.sleep(0.2)
    if not stopping:
        print(f"the GUI launcher exited ({launcher.returncode}); stopping experiments", flush=True)
    else:
        launcher.send_signal(signal.SIGTERM)  # it stops waved and the app by PID
    stopped = stop_experiments()
    if stopped:
        print(f"stopped experiment(s) {stopped}", flush=True)
    try:
        launcher.wait(timeout=LAUNCHER_GRACE_S)
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.wait()
    return 0 if stopping else (launcher.returncode or 1)


if __name__ == "__main__":
    sys.exit(main())
