"""The experiment runner, with real training processes of the tiny model on the CPU."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import pattern_rows, tiny_config, write_yaml

from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.experiments.status import TERMINAL, process_alive
from llm_studio.runner import DIED, PROCESS_LOG, Runner, RunnerError
from llm_studio.store import (
    DatasetRecord,
    ExperimentRecord,
    NotFoundError,
    Store,
    experiment_dir,
)

SECRET_NAME = "OPENAI_API_KEY"
SECRET = "sk-runner-test-5f1c9a7e"


class Lab:
    """A store holding one small dataset, and a maker of experiments of it and of runners."""

    def __init__(self, store: Store, dataset_id: int, csv: Path, model_dir: Path):
        self.store = store
        self.dataset_id = dataset_id
        self.csv = csv
        self.model_dir = model_dir
        self.runners: list[Runner] = []

    def experiment(
        self,
        name: str,
        epochs: int = 1,
        environment: dict | None = None,
        metric: str = "BLEU",
    ) -> ExperimentRecord:
        """`environment` changes the runnable defaults; number_of_workers None drops the
        key, so the declared default applies."""
        folder = experiment_dir(name)
        folder.mkdir(parents=True)
        cfg = tiny_config(
            self.model_dir,
            self.csv,
            folder,
            training={"epochs": epochs, "evaluation_epochs": 1.0},
            prediction={"max_length_inference": 1, "metric": metric},
            environment=environment or {},
        )
        if cfg["environment"].get("number_of_workers", 0) is None:
            del cfg["environment"]["number_of_workers"]
        write_yaml(folder / "cfg.yaml", cfg)
        return self.store.add_experiment(
            ExperimentRecord(
                name=name,
                dataset_id=self.dataset_id,
                path=str(folder),
                problem_type="text_causal_language_modeling",
                config_file=str(folder / "cfg.yaml"),
            )
        )

    def runner(self, cls: type[Runner] = Runner, **kwargs) -> Runner:
        runner = cls(self.store, **kwargs)
        self.runners.append(runner)
        return runner

    def get(self, record: ExperimentRecord) -> ExperimentRecord:
        return self.store.get_experiment(record.id)

    def kill_leftovers(self) -> None:
        """Never leave a training process behind, whatever a test did."""
        for record in self.store.list_experiments():
            if not (record.pid and process_alive(record.pid, record.process_start_time)):
                continue  # not running, or the pid is reused by a stranger
            # torchrun's ranks have sessions of their own: the leader's descendants, too.
            for process in run_processes(record.pid):
                if process.pid == os.getpid():
                    continue
                with contextlib.suppress(psutil.Error):
                    process.kill()


@pytest.fixture
def lab(tmp_path, monkeypatch, tiny_model_dir):
    """A workdir with a store, a small dataset, and a maker of experiments."""
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path / "work"))
    monkeypatch.delenv("LLM_STUDIO_FAULT_AT_STEP", raising=False)
    csv = tmp_path / "pattern.csv"
    pattern_rows(24).to_csv(csv, index=False)
    store = Store()
    dataset = store.add_dataset(
        DatasetRecord(
            name="pattern",
            path=str(tmp_path),
            config_file=str(tmp_path / "dataset.yaml"),
            problem_type="text_causal_language_modeling",
            train_dataframe=str(csv),
        )
    )
    lab = Lab(store, dataset.id, csv, tiny_model_dir)
    yield lab
    lab.kill_leftovers()


def group(pgid: int) -> list[psutil.Process]:
    """Live processes of process group `pgid`, found independently of the runner."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (OSError, psutil.Error):
            pass
    return found


def wait_for(condition, runner: Runner | None = None, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        if runner is not None:
            runner.poll()
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def training_steps(record: ExperimentRecord) -> bool:
    """train.py is inside its loop: its signal handlers are in place."""
    status = ExperimentFolder(record.path).read_status()
    return status is not None and status.state == "running" and status.step >= 1


def files_of(path: str) -> list[Path]:
    return [p for p in Path(path).rglob("*") if p.is_file()]


def test_sigkill_reads_as_failed_and_the_secret_stays_in_the_environment(lab):
    record = lab.experiment("killed", epochs=100, metric="GPT")  # GPT: the run uses the key
    runner = lab.runner()
    assert runner.submit(record, gpus=[], env={SECRET_NAME: SECRET}) == "running"
    record = lab.get(record)
    assert record.status == "running" and record.pid and record.process_start_time
    child = psutil.Process(record.pid)
    assert child.environ()[SECRET_NAME] == SECRET
    assert child.environ()["CUDA_VISIBLE_DEVICES"] == ""
    assert not any(SECRET in arg for arg in child.cmdline())
    assert child.cmdline()[-2:] == ["-Y", record.config_file]
    wait_for(lambda: training_steps(record), runner)
    assert runner.state(record) == "running"

    os.killpg(record.pid, signal.SIGKILL)
    wait_for(lambda: lab.get(record).status == "failed", runner)
    assert runner.state(lab.get(record)) == "failed"
    status = ExperimentFolder(record.path).read_status()
    assert status.state == "failed" and DIED in status.error and "SIGKILL" in status.error
    assert status.step >= 1, "the progress is kept"
    assert "step" in (Path(record.path) / "logs.log").read_text(), "the logs are kept"
    assert (Path(record.path) / PROCESS_LOG).is_file()
    assert not group(record.pid)
    for path in files_of(record.path):
        assert SECRET.encode() not in path.read_bytes(), path


ALL_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIA-test",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-test",
    "KAGGLE_USERNAME": "kaggle-user-test",
    "KAGGLE_KEY": "kaggle-key-test",
    "HF_TOKEN": "hf_test",
    "OPENAI_API_KEY": "sk-test",
    "NEPTUNE_API_TOKEN": "neptune-test",
}


@pytest.mark.parametrize(
    "metric, expected", [("BLEU", set()), ("GPT", {"OPENAI_API_KEY"})], ids=["bleu", "gpt"]
)
def test_a_run_gets_only_the_secrets_it_uses(lab, monkeypatch, metric, expected):
    """All seven secrets in the app (Settings and its own environment): a local-backbone run gets
    the OpenAI key only for the GPT metric, and never AWS, Kaggle, HF or Neptune keys."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-app-environment")
    monkeypatch.setenv("KAGGLE_KEY", "from-the-app-environment")
    record = lab.experiment(f"secrets-{metric}", epochs=100, metric=metric)
    runner = lab.runner()
    assert runner.submit(record, gpus=[], env=ALL_SECRETS) == "running"
    environ = psutil.Process(lab.get(record).pid).environ()
    try:
        assert {k for k in ALL_SECRETS if k in environ} == expected
        assert all(environ[k] == ALL_SECRETS[k] for k in expected)
    finally:
        runner.stop(record.id)


def test_stop_ends_the_whole_group_children_included(lab, tmp_path):
    # A python that leaves a child in the group which ignores SIGTERM: only SIGKILL ends it.
    wrapper = tmp_path / "python-with-child"
    wrapper.write_text(
        f'#!/bin/sh\n(trap "" TERM; exec sleep 300) &\nexec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    record = lab.experiment("stopped", epochs=100)
    runner = lab.runner(python=str(wrapper), stop_grace_s=1.0)
    runner.submit(record, gpus=[])
    record = lab.get(record)
    wait_for(lambda: training_steps(record), runner)
    assert len(group(record.pid)) >= 2, "train.py and its child"

    runner.stop(record.id)
    # No poll(): the grace period runs out in the background and SIGKILL ends the child.
    wait_for(lambda: not group(record.pid), timeout=30)
    wait_for(lambda: lab.get(record).status == "stopped", runner)
    assert runner.state(lab.get(record)) == "stopped"
    status = ExperimentFolder(record.path).read_status()
    assert status.state == "stopped" and status.error is None
    assert "Received SIGTERM" in (Path(record.path) / "logs.log").read_text()
    runner.stop(record.id)  # stopping a stopped experiment does nothing
    assert lab.get(record).status == "stopped"


def test_cpu_runs_queue_survive_a_restart_and_start_by_themselves(lab):
    first, second, third = (lab.experiment(n) for n in ("first", "second", "third"))
    runner = lab.runner()
    assert runner.submit(first, gpus=[]) == "running"
    assert runner.submit(second, gpus=[]) == "queued"
    assert runner.submit(third, gpus=[]) == "queued"
    with pytest.raises(RunnerError, match="already running or queued"):
        runner.submit(second, gpus=[])
    assert runner.queued_ids() == [second.id, third.id]
    assert runner.state(lab.get(second)) == "queued"
    assert ExperimentFolder(second.path).read_status().state == "queued"
    assert lab.get(second).status == "queued"

    runner.stop(third.id)  # a queued experiment just leaves the queue
    assert runner.queued_ids() == [second.id]
    assert runner.state(lab.get(third)) == "stopped" and lab.get(third).status == "stopped"

    # The app restarts: the new runner re-attaches the live run and re-queues the waiting one.
    del runner
    runner = lab.runner()
    runner.reattach()
    assert runner.running_ids() == [first.id] and runner.queued_ids() == [second.id]
    assert runner.state(lab.get(first)) == "running"

    def second_started():
        states = runner.state(lab.get(first)), runner.state(lab.get(second))
        assert states.count("running") <= 1, states
        return states[1] == "running" and states

    assert wait_for(second_started, runner) == ("finished", "running")
    assert lab.get(first).status == "finished", "the re-attached run's completion is seen"
    assert ExperimentFolder(first.path).read_status().state == "finished"
    assert runner.queued_ids() == [] and runner.running_ids() == [second.id]

    pid = lab.get(second).pid
    deleted = runner.delete([first.id, second.id])  # second still runs: it is killed first
    assert [r.name for r in deleted] == ["first", "second"]
    assert not group(pid)
    assert not Path(first.path).exists() and not Path(second.path).exists()
    assert [r.name for r in lab.store.list_experiments()] == ["third"]
    assert runner.running_ids() == []


def test_a_live_pid_with_another_start_time_is_not_ours(lab):
    record = lab.experiment("reused")
    me = psutil.Process()
    then = me.create_time() - 1000.0
    lab.store.update_experiment_fields(
        record.id, status="running", pid=me.pid, process_start_time=then
    )
    ExperimentFolder(record.path).write_status(
        ExperimentStatus(state="running", pid=me.pid, pid_start_time=then, step=3)
    )
    runner = lab.runner()
    assert runner.state(lab.get(record)) == "failed"
    runner.reattach()
    assert runner.running_ids() == []
    status = ExperimentFolder(record.path).read_status()
    assert status.state == "failed" and DIED in status.error and status.step == 3
    assert lab.get(record).status == "failed"
    runner.stop(record.id)  # nothing to stop, and certainly not this test's process
    assert psutil.pid_exists(me.pid)


class SleepingRunner(Runner):
    """Runs `sleep` instead of train.py, to check GPU bookkeeping on a machine without GPUs."""

    def command(self, config_file, gpus):
        real = super().command(config_file, gpus)
        if gpus:
            assert real[1:4] == ["-m", "torch.distributed.run", "--standalone"]
            assert f"--nproc_per_node={len(gpus)}" in real
        return ["sleep", "300"]


def test_gpu_runs_wait_for_their_gpus_in_order(lab):
    a, b, c, d = (lab.experiment(n) for n in "abcd")
    runner = lab.runner(SleepingRunner, gpu_count=2, stop_grace_s=1.0)
    with pytest.raises(RunnerError, match="GPU id"):
        runner.submit(a, gpus=["2"])
    assert runner.submit(a, gpus=["0"]) == "running"
    assert psutil.Process(lab.get(a).pid).environ()["CUDA_VISIBLE_DEVICES"] == "0"
    assert runner.submit(b, gpus=["0", "1"]) == "queued"
    # GPU 1 is free, but b waits for it: c may not overtake b.
    assert runner.submit(c, gpus=["1"]) == "queued"
    assert runner.submit(d, gpus=[]) == "running", "the CPU is free"
    assert runner.busy_gpus() == {"0"}

    runner.stop(a.id)
    wait_for(lambda: runner.state(lab.get(b)) == "running", runner, timeout=15)
    assert runner.state(lab.get(a)) == "stopped" and runner.state(lab.get(c)) == "queued"
    assert psutil.Process(lab.get(b).pid).environ()["CUDA_VISIBLE_DEVICES"] == "0,1"
    runner.delete([b.id])
    wait_for(lambda: runner.state(lab.get(c)) == "running", runner, timeout=15)
    runner.delete([c.id, d.id])
    assert runner.running_ids() == [] and runner.queued_ids() == []


def test_the_queue_survives_a_restart_and_delete_checks_ids_first(lab):
    a, b = lab.experiment("a"), lab.experiment("b", metric="GPT")  # GPT: b uses the key
    first = lab.runner(SleepingRunner, gpu_count=0)
    assert first.submit(a, gpus=[]) == "running"
    assert first.submit(b, gpus=[], env={SECRET_NAME: "old"}) == "queued"

    second = lab.runner(SleepingRunner, gpu_count=0, stop_grace_s=1.0)
    second.reattach(env={SECRET_NAME: "current"})  # secrets are never on disk: given again
    assert second.running_ids() == [a.id] and second.queued_ids() == [b.id]
    with pytest.raises(NotFoundError):
        second.delete([a.id, 999])
    assert lab.get(a) is not None and Path(a.path).is_dir()

    second.stop(a.id)
    wait_for(lambda: second.state(lab.get(b)) == "running", second, timeout=15)
    assert second.state(lab.get(a)) == "stopped"
    assert psutil.Process(lab.get(b).pid).environ()[SECRET_NAME] == "current"
    second.delete([a.id, b.id])
    assert lab.store.list_experiments() == []


class TorchrunLikeRunner(Runner):
    """A leader that starts its worker in a session of its own, as torchrun does."""

    def command(self, config_file, gpus):
        code = (
            "import subprocess, time\n"
            "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
            "time.sleep(300)\n"
        )
        return [self.python, "-c", code]


def test_workers_in_their_own_sessions_are_stopped_and_killed_too(lab):
    stopped, killed = lab.experiment("stopped"), lab.experiment("killed")
    runner = lab.runner(TorchrunLikeRunner, gpu_count=2, stop_grace_s=1.0)

    def worker_of(record):
        leader = psutil.Process(lab.get(record).pid)
        children = wait_for(leader.children, runner, timeout=15)
        assert os.getpgid(children[0].pid) != leader.pid, "outside the leader's group"
        return children[0]

    runner.submit(stopped, gpus=["0"])
    worker = worker_of(stopped)
    runner.stop(stopped.id)
    wait_for(lambda: lab.get(stopped).status == "stopped", runner, timeout=15)
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE

    runner.submit(killed, gpus=["1"])
    worker = worker_of(killed)
    os.kill(lab.get(killed).pid, signal.SIGKILL)  # only the leader dies: its worker is orphaned
    wait_for(lambda: lab.get(killed).status == "failed", runner, timeout=15)
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE


# --- stopping every engine, with and without loader workers ---


class TwoProcessRunner(Runner):
    """The runner's own torchrun command for two processes, run on the CPU (gloo): what it
    starts for two GPUs, with CUDA_VISIBLE_DEVICES empty."""

    def command(self, config_file, gpus):
        return super().command(config_file, ("0", "1"))


def run_processes(pid: int) -> list[psutil.Process]:
    """The leader, its group and every descendant (torchrun's ranks have sessions of their own)."""
    found = {p.pid: p for p in group(pid)}
    try:
        leader = psutil.Process(pid)
        found.update({p.pid: p for p in [leader, *leader.children(recursive=True)]})
    except psutil.Error:
        pass
    return list(found.values())


def loader_workers(processes: list[psutil.Process]) -> list[psutil.Process]:
    """DataLoader workers: forked by a train.py process, so they share its command line."""
    workers = []
    for process in processes:
        try:
            parent = process.parent()
            command = process.cmdline()
            if parent and any("train.py" in a for a in command) and parent.cmdline() == command:
                workers.append(process)
        except psutil.Error:
            pass
    return workers


def read(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.is_file() else ""


def gone(processes: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)


STOP_BOUND_S = 10.0  # the bound: a stopped run reads "stopped", every process gone
SLOW = pytest.mark.slow


@pytest.mark.parametrize("workers", ["default", 0])
@pytest.mark.parametrize(
    "engine",
    ["single", pytest.param("ddp", marks=SLOW), pytest.param("fsdp", marks=SLOW),
     pytest.param("deepspeed", marks=SLOW)],
)  # fmt: skip
def test_a_stop_ends_stopped_within_10_s_with_the_resume_state_and_no_process_left(
    lab, engine, workers
):
    """The runner signals the whole group; the loader workers ignore it, so the trainer (every
    rank of it) finishes its step, saves the resume state, writes "stopped" and exits."""
    from llm_studio.config.sections import EnvironmentSection

    environment = {"number_of_workers": None if workers == "default" else workers}
    if engine != "single":
        environment["data_parallel_engine"] = engine
    if engine == "deepspeed":
        import deepspeed  # noqa: F401  (installed by make setup: a missing one fails here)
    expected_workers = EnvironmentSection().number_of_workers if workers == "default" else 0
    assert workers == 0 or expected_workers > 0, "the default starts loader workers"
    record = lab.experiment(f"stop-{engine}-{workers}", epochs=100, environment=environment)
    runner = lab.runner(Runner if engine == "single" else TwoProcessRunner)
    runner.submit(record, gpus=[])
    record = lab.get(record)
    ranks = 1 if engine == "single" else 2

    def steps_with_workers():
        state = runner.state(lab.get(record))
        assert state in ("queued", "running"), (state, read(Path(record.path) / PROCESS_LOG))
        found = run_processes(record.pid)
        loading = len(loader_workers(found)) == ranks * expected_workers
        return training_steps(record) and loading and found

    processes = wait_for(steps_with_workers, runner, timeout=600)  # DeepSpeed may compile first
    started = time.monotonic()
    runner.stop(record.id)
    wait_for(lambda: lab.get(record).status in TERMINAL, runner, timeout=60)
    wait_for(lambda: gone(processes) and not group(record.pid), timeout=60)
    elapsed = time.monotonic() - started

    folder = ExperimentFolder(record.path)
    status = folder.read_status()
    logs = (Path(record.path) / "logs.log").read_text()
    process_log = read(Path(record.path) / PROCESS_LOG)
    assert lab.get(record).status == "stopped", (status, process_log[-3000:])
    assert status.state == "stopped" and status.error is None
    assert "DataLoader worker" not in logs + process_log
    assert f"Stopped at step {status.step}" in logs, "the trainer stopped, not the SIGKILL"
    position = json.loads((folder.resume_dir / "position.json").read_text())
    assert position["step"] == status.step and (folder.resume_dir / "state.pt").is_file()
    print(f"{engine}, workers {workers}: stopped and gone after {elapsed:.1f} s")
    assert elapsed <= STOP_BOUND_S, f"stopped after {elapsed:.1f} s"
