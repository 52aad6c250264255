"""Starts, queues, watches, stops and deletes training processes.

Design:

- Each experiment runs as its own session and process group (`start_new_session=True`):
  `python -m torch.distributed.run --standalone --nproc_per_node=<#gpus> train.py -Y cfg.yaml`
  (torchrun) with `CUDA_VISIBLE_DEVICES` set to the chosen GPUs, or `python train.py -Y cfg.yaml`
  on the CPU. The child's raw stdout and stderr go to `<folder>/process.log`, so a crash before
  train.py starts its own `logs.log` is kept.
- Secrets reach the child only through its environment: never its command line, never a file.
- Resources are the GPUs ("gpu:<id>") or the CPU ("cpu", one CPU run at a time). An experiment
  whose resources are busy waits in a FIFO queue, visible as state "queued" in its status.json
  and in the store. `poll()` starts queued experiments when they can run; an experiment never
  overtakes an earlier one that waits for any of the same resources.
- A process is identified by pid AND start time (both kept in the store), so a reused pid is
  never taken for our training process.
- The experiment folder's status.json is the truth for a live run (train.py writes it); the
  runner writes it only around the process: "queued", "running" at the start, and "failed" or
  "stopped" when the process ended without saying so itself.
- `reattach()` after a restart of the app re-adopts live processes from the store and marks
  dead ones failed.

The pieces live beside it: `launch.py` (command line, environment, the child process),
`runs.py` (a queued run, a watched run and its stop/kill, finding an experiment's live
process), `run_inputs.py` (config file, its GPUs, the extra environment), `processes.py`
(process identity and groups).

No torch or transformers import here: the UI process imports this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from llm_studio import paths
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.experiments.status import ACTIVE, TERMINAL, RunState, process_alive
from llm_studio.runner import processes
from llm_studio.runner.errors import RunnerError
from llm_studio.runner.launch import (
    PROCESS_LOG,
    child_environment,
    start_training_process,
    training_command,
)
from llm_studio.runner.run_inputs import check_env, config_file_of, config_gpus
from llm_studio.runner.runs import QueuedRun, WatchedRun, live_process
from llm_studio.store.db import (
    ExperimentRecord,
    NotFoundError,
    Store,
    experiments_root,
    resolve,
)

log = logging.getLogger("llm_studio")

DIED = "the training process died (killed or crashed)"
# A stopped run finishes its step, saves its resume state (and checkpoint) and exits within
# this; then SIGKILL ends what is left, so a stop reads "stopped" within 10 s either way.
DEFAULT_STOP_GRACE_S = 8.0


class Runner:
    """One per app process; safe to call from several threads (one lock guards everything)."""

    def __init__(
        self,
        store: Store,
        repo_root: str | os.PathLike[str] = paths.REPO_ROOT,
        python: str = sys.executable,
        gpu_count: int | None = None,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
    ):
        self.store = store
        self.repo_root = Path(repo_root)
        self.python = python
        self.stop_grace_s = float(stop_grace_s)
        self._gpu_count = gpu_count
        self._lock = threading.RLock()
        self._queue: list[QueuedRun] = []
        self._running: dict[int, WatchedRun] = {}

    # --- information -------------------------------------------------------------------------

    @property
    def gpu_count(self) -> int:
        """GPUs on this machine (from `nvidia-smi -L`, asked once), unless given to __init__."""
        if self._gpu_count is None:
            self._gpu_count = processes.detect_gpu_count()
        return self._gpu_count

    def queued_ids(self) -> list[int]:
        """Experiment ids waiting to start, first to start first."""
        with self._lock:
            return [w.experiment_id for w in self._queue]

    def running_ids(self) -> list[int]:
        """Experiment ids whose training process this runner watches."""
        with self._lock:
            return list(self._running)

    def busy_gpus(self) -> set[str]:
        """GPU ids used by the runs this runner watches."""
        with self._lock:
            return {g for run in self._running.values() for g in run.gpus}

    def command(self, config_file: str | os.PathLike[str], gpus: Sequence[str]) -> list[str]:
        """The command line of a run. It never holds a secret."""
        return training_command(self.python, self.repo_root, config_file, gpus)

    def state(self, record: ExperimentRecord) -> str:
        """queued, running, finished, failed or stopped: status.json, checked against liveness.

        Reads only. A run whose status says running but whose process (pid + start time) is gone
        reads as failed, or as stopped if a stop was asked for; `poll()` then writes that down.
        """
        status = ExperimentFolder(resolve(record.path)).read_status()
        with self._lock:
            if self._is_queued(record.id):
                return RunState.QUEUED
            run = self._running.get(record.id)
            stop_requested = run is not None and run.stop_requested
        state = status.state if status is not None else (record.status or RunState.QUEUED)
        if state == RunState.RUNNING:
            if process_alive(record.pid, record.process_start_time) or (
                status is not None and process_alive(status.pid, status.pid_start_time)
            ):
                return RunState.RUNNING
            return RunState.STOPPED if stop_requested else RunState.FAILED
        return state if state in ACTIVE | TERMINAL else RunState.FAILED

    # --- starting ----------------------------------------------------------------------------

    def submit(
        self,
        record: ExperimentRecord,
        gpus: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        resume: bool = False,
    ) -> str:
        """Start the experiment now if its GPUs (or the CPU) are free, else queue it.

        `record.config_file` (default `<record.path>/cfg.yaml`) must exist and write to
        `record.path`. `gpus` are GPU ids like "0"; None takes the config's environment.gpus;
        empty runs on the CPU. `env` is added to the child's environment: the place for secrets
        (OPENAI_API_KEY, HF_TOKEN, ...), of which the child gets only those its config uses
        (`run_env.secrets_used`). `resume` passes --resume to train.py.
        Returns "running" or "queued"; raises RunnerError if it cannot start at all.
        """
        if not record.id:
            raise RunnerError(f"Experiment {record.name!r} has no id: add it to the store first.")
        config_file = config_file_of(record)
        if not config_file.is_file():
            raise RunnerError(f"Experiment {record.name!r}: no config file at {config_file}.")
        chosen = self._check_gpus(config_gpus(config_file) if gpus is None else gpus)
        waiting = QueuedRun(record.id, chosen, check_env(env), resume)
        with self._lock:
            if record.id in self._running or self._is_queued(record.id):
                raise RunnerError(f"Experiment {record.name!r} is already running or queued.")
            if self._can_start(waiting.resources, ahead=self._queue):
                self._launch(record, waiting)
                return RunState.RUNNING
            self._enqueue(record, waiting)
            return RunState.QUEUED

    def start_queued(self) -> list[int]:
        """Start every queued experiment that can run now, in queue order; returns their ids."""
        with self._lock:
            started = []
            claimed: set[str] = set()  # resources an earlier waiting experiment is owed
            for waiting in list(self._queue):
                resources = waiting.resources
                if resources & claimed or not self._can_start(resources, ahead=[]):
                    claimed |= resources
                    continue
                self._queue.remove(waiting)
                record = self.store.get_experiment(waiting.experiment_id)
                if record is None:  # deleted meanwhile
                    continue
                try:
                    self._launch(record, waiting)
                except RunnerError as err:
                    log.error("%s", err)
                    continue
                started.append(waiting.experiment_id)
            return started

    # --- watching ----------------------------------------------------------------------------

    def poll(self) -> None:
        """Notice runs that ended, SIGKILL stopped runs past their grace period, start queued
        ones. The UI calls this every few seconds."""
        with self._lock:
            now = time.monotonic()
            for run in list(self._running.values()):
                try:
                    if run.ended():
                        self._finish(run)
                        continue
                    run.procs.refresh()  # torchrun's workers live in sessions of their own
                    if run.kill_at is not None and now >= run.kill_at:
                        run.procs.signal(signal.SIGKILL)
                except Exception:  # one broken experiment must not stop the others; retried
                    log.exception("Watching experiment %s failed", run.experiment_id)
            self.start_queued()

    def reattach(self, env: Mapping[str, str] | None = None) -> None:
        """After a restart of the app: watch the live runs the store knows, mark dead ones
        failed, and queue the queued ones again.

        Secrets are never written down, so queued experiments get `env` (the secrets the app
        holds now) when they start.
        """
        env = check_env(env)
        with self._lock:
            requeue: list[tuple[float, int, ExperimentRecord]] = []
            for record in self.store.list_experiments():
                if record.id in self._running or self._is_queued(record.id):
                    continue
                folder = ExperimentFolder(resolve(record.path))
                status = folder.read_status()
                file_state = status.state if status is not None else None
                if record.status not in ACTIVE and file_state not in ACTIVE:
                    continue
                live = live_process(record, status)
                if live is not None:
                    self._adopt(record, folder, *live)
                elif file_state == RunState.RUNNING or (
                    file_state is None and record.status == RunState.RUNNING
                ):
                    self._mark(record.id, folder, status, RunState.FAILED, DIED)
                elif file_state in TERMINAL:
                    self._set_store_status(record.id, file_state)
                else:  # queued
                    queued_at = status.updated_at if status is not None else 0.0
                    requeue.append((queued_at, record.id, record))
            for _, _, record in sorted(requeue, key=lambda item: item[:2]):
                try:
                    gpus = self._check_gpus(config_gpus(config_file_of(record)))
                except RunnerError as err:
                    self._mark(record.id, None, None, RunState.FAILED, str(err), record=record)
                    continue
                self._queue.append(QueuedRun(record.id, gpus, dict(env)))
            self.start_queued()

    # --- stopping and deleting ---------------------------------------------------------------

    def stop(self, experiment_id: int) -> None:
        """Stop a run: SIGTERM to its whole process group (train.py then stops cleanly after the
        current step; its DataLoader workers ignore it and are shut down by train.py), SIGKILL
        to what is left after `stop_grace_s`. A queued experiment just
        leaves the queue. Either way it ends as "stopped". Nothing happens to a finished one."""
        with self._lock:
            for waiting in self._queue:
                if waiting.experiment_id == experiment_id:
                    self._queue.remove(waiting)
                    record = self.store.get_experiment(experiment_id)
                    if record is not None:
                        self._mark(experiment_id, None, None, RunState.STOPPED, None, record=record)
                    return
            run = self._running.get(experiment_id)
            if run is None:
                record = self.store.get_experiment(experiment_id)
                if record is None:
                    raise NotFoundError(f"No experiment with id {experiment_id}.")
                folder = ExperimentFolder(resolve(record.path))
                status = folder.read_status()
                live = live_process(record, status)
                if live is None:
                    if (
                        status is not None and status.state == RunState.QUEUED
                    ):  # queued before a restart
                        self._mark(experiment_id, folder, status, RunState.STOPPED, None)
                    return
                run = self._adopt(record, folder, *live)
            run.request_stop(self.stop_grace_s)

    def delete(self, experiment_ids: Iterable[int]) -> list[ExperimentRecord]:
        """Delete experiments: kill their processes (SIGKILL: the results are going away),
        drop them from the queue, remove their records and folders. All ids must exist
        (NotFoundError, nothing done). Returns the deleted records.

        Only folders inside `<workdir>/output/user` are removed; others are left in place.
        """
        ids = list(dict.fromkeys(int(i) for i in experiment_ids))
        with self._lock:
            records = [self.store.get_experiment(i) for i in ids]
            missing = [i for i, r in zip(ids, records, strict=True) if r is None]
            if missing:
                raise NotFoundError(
                    f"No experiment with id {', '.join(map(str, missing))}; nothing was deleted."
                )
            self._queue = [w for w in self._queue if w.experiment_id not in ids]
            for record in filter(None, records):  # every id was found (checked above)
                self._kill_now(record)
            deleted = self.store.delete_experiments(ids)
            failures = []
            for record in deleted:
                error = _remove_folder(resolve(record.path))
                if error:
                    failures.append(error)
            self.start_queued()
        if failures:
            raise RunnerError("; ".join(failures))
        return deleted

    def rename(self, experiment_id: int, new_name: str) -> ExperimentRecord:
        """Rename a finished, failed or stopped experiment: its record, folder and cfg.yaml."""
        from llm_studio.store.db import check_name, experiment_dir
        from llm_studio.store.recovery import rename_experiment

        with self._lock:
            record = self.store.get_experiment(experiment_id)
            if record is None:
                raise NotFoundError(f"No experiment with id {experiment_id}.")
            state = self.state(record)
            if state in ACTIVE:
                raise RunnerError(f"{record.name} is {state}; stop it before renaming it.")
            new_name = check_name(new_name, "experiment name")
            if self.store.get_experiment_by_name(new_name) is not None:
                raise RunnerError(f"An experiment named {new_name!r} already exists.")
            new_folder = experiment_dir(new_name)
            if new_folder.exists():
                raise RunnerError(f"{new_folder} already exists.")
            return rename_experiment(self.store, record, new_name)  # crash-safe: a journal

    # --- internals (call with the lock held) -------------------------------------------------

    def _check_gpus(self, gpus: Sequence[str]) -> tuple[str, ...]:
        chosen = tuple(str(g).strip() for g in gpus)
        if len(set(chosen)) != len(chosen):
            raise RunnerError(f"GPU ids {list(chosen)} name a GPU twice.")
        count = self.gpu_count if chosen else 0
        unknown = [g for g in chosen if not (g.isdigit() and int(g) < count)]
        if unknown:
            where = f"GPUs 0 to {count - 1} exist" if count else "no GPU exists"
            raise RunnerError(f"GPU id(s) {', '.join(unknown)} asked for, but {where}.")
        return chosen

    def _is_queued(self, experiment_id: int) -> bool:
        return any(w.experiment_id == experiment_id for w in self._queue)

    def _busy(self) -> set[str]:
        return {r for run in self._running.values() for r in run.resources}

    def _can_start(self, resources: frozenset[str], ahead: Sequence[QueuedRun]) -> bool:
        if resources & self._busy():
            return False
        return not any(resources & w.resources for w in ahead)

    def _enqueue(self, record: ExperimentRecord, waiting: QueuedRun) -> None:
        folder = ExperimentFolder(resolve(record.path))
        folder.write_status(ExperimentStatus(state=RunState.QUEUED))
        self.store.update_experiment_fields(
            waiting.experiment_id, status=RunState.QUEUED, pid=None, process_start_time=None
        )
        self._queue.append(waiting)

    def _launch(self, record: ExperimentRecord, waiting: QueuedRun) -> WatchedRun:
        folder = ExperimentFolder(resolve(record.path))
        folder.path.mkdir(parents=True, exist_ok=True)
        command = self.command(config_file_of(record), waiting.gpus)
        if waiting.resume:
            command.append("--resume")
        env = child_environment(waiting.env, config_file_of(record), waiting.gpus)
        try:
            popen = start_training_process(command, self.repo_root, env, folder.path)
        except OSError as err:
            message = f"could not start the training process: {err}"
            self._mark(record.id, folder, None, RunState.FAILED, message, record=record)
            raise RunnerError(f"Experiment {record.name!r}: {message}.") from err
        start_time = processes.start_time_of(popen.pid)
        run = WatchedRun(record.id, folder, popen.pid, start_time, waiting.gpus, popen=popen)
        self._running[record.id] = run
        # train.py overwrites this with its own pid once it runs (a worker's, under torchrun).
        folder.write_status(
            ExperimentStatus(
                state=RunState.RUNNING,
                pid=popen.pid,
                pid_start_time=start_time,
                started_at=time.time(),
            )
        )
        with contextlib.suppress(NotFoundError):  # deleted meanwhile: poll() still reaps it
            self.store.update_experiment_fields(
                record.id, status=RunState.RUNNING, pid=popen.pid, process_start_time=start_time
            )
        return run

    def _adopt(
        self, record: ExperimentRecord, folder: ExperimentFolder, pid: int, start_time: float
    ) -> WatchedRun:
        """Watch a live training process this runner did not start."""
        try:
            gpus = tuple(str(g) for g in config_gpus(config_file_of(record)))
        except RunnerError:
            gpus = ()
        run = WatchedRun(record.id, folder, pid, start_time, gpus)
        self._running[record.id] = run
        if record.status != RunState.RUNNING or record.pid != pid:
            self.store.update_experiment_fields(
                record.id, status=RunState.RUNNING, pid=pid, process_start_time=start_time
            )
        return run

    def _finish(self, run: WatchedRun) -> None:
        """The leader exited: clean up its group and make status.json and the store say how."""
        for process in run.procs.alive():
            with contextlib.suppress(Exception):
                process.kill()
        status = run.folder.read_status()
        if status is None or status.state in ACTIVE:
            if run.stop_requested:
                final, error = RunState.STOPPED, None
            else:
                info = run.exit_info()
                final = RunState.FAILED
                error = f"{DIED}{': ' + info if info else ''}; see {PROCESS_LOG} and logs.log"
            self._mark(run.experiment_id, run.folder, status, final, error)
        else:
            self._set_store_status(run.experiment_id, status.state)
        del self._running[run.experiment_id]

    def _mark(
        self,
        experiment_id: int,
        folder: ExperimentFolder | None,
        status: ExperimentStatus | None,
        state: str,
        error: str | None,
        record: ExperimentRecord | None = None,
    ) -> None:
        """Write `state` into status.json (keeping its progress) and the store."""
        if folder is None and record is not None:
            folder = ExperimentFolder(resolve(record.path))
        if folder is not None and folder.path.is_dir():
            status = status or folder.read_status() or ExperimentStatus()
            status.state = state
            status.error = error if state == RunState.FAILED else None
            folder.write_status(status)
        self._set_store_status(experiment_id, state)

    def _set_store_status(self, experiment_id: int, state: str) -> None:
        with contextlib.suppress(NotFoundError):  # deleted meanwhile
            self.store.update_experiment_fields(experiment_id, status=state)

    def _kill_now(self, record: ExperimentRecord) -> None:
        run = self._running.pop(record.id, None)
        if run is None:
            folder = ExperimentFolder(resolve(record.path))
            live = live_process(record, folder.read_status())
            if live is None:
                return
            run = WatchedRun(record.id, folder, live[0], live[1], ())
        if not run.kill_now():
            raise RunnerError(
                f"The training process of experiment {record.name!r} (pid {run.pid}) did not end."
            )


# --- helpers ----------------------------------------------------------------------------------


def _remove_folder(path: Path) -> str | None:
    root = experiments_root().resolve()
    target = path.resolve()
    if root not in target.parents:
        log.warning("Not removing %s: it is outside %s", target, root)
        return None
    try:
        shutil.rmtree(target)
    except FileNotFoundError:
        pass
    except OSError as err:
        return f"Could not remove {target}: {err}"
    return None
