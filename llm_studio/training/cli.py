"""`python train.py -Y cfg.yaml [--section.key value ...]`: load, check, run, report.

Under torchrun (distributed_train.sh) every rank runs this. Rank 0 owns the experiment folder:
it starts logs.log and writes the status. The other ranks log warnings to their console only;
a rank that fails appends its error to logs.log, and rank 0, failing in turn when the other
ranks' collectives break off, puts the first rank's error into the failed status.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import yaml

from llm_studio.config.checks import check_config
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import load_config
from llm_studio.data.readers import DataError
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.experiments.status import RunState

if TYPE_CHECKING:
    from llm_studio.training.loop import StopFlag

log = logging.getLogger("llm_studio")

# Errors whose message says everything: shown as one line, without a traceback.
USER_ERRORS = (ConfigError, DataError)


def torchrun_rank() -> int | None:
    """This process's rank when torchrun started several (distributed_train.sh), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return int(os.environ.get("RANK", "0"))
    return None


def setup_logging(logfile: Path | None, rank: int | None = None) -> None:
    """INFO to the console and `logfile`; ranks other than 0 log warnings to the console only."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if not rank else logging.WARNING)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    where = "" if rank is None else f"[rank {rank}] "
    formatter = logging.Formatter(
        f"%(asctime)s {where}%(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"
    )
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    root.addHandler(console)
    if logfile is not None and not rank:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(logfile, mode="a", encoding="utf-8")
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    for noisy in ("httpx", "httpx2", "openai", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _output_directory_of(yaml_path: str, overrides: list[str]) -> Path | None:
    """Best effort, for a config that does not load: where should the failed status go?"""
    for i, arg in enumerate(overrides):
        if arg == "--output_directory" and i + 1 < len(overrides):
            return Path(overrides[i + 1])
        if arg.startswith("--output_directory="):
            return Path(arg.split("=", 1)[1])
    try:
        data = yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8"))
        value = data.get("output_directory") if isinstance(data, dict) else None
        return Path(value) if isinstance(value, str) and value else None
    except Exception:
        return None


def _process_start_time() -> float | None:
    try:
        import psutil

        return psutil.Process(os.getpid()).create_time()
    except Exception:
        return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Fine-tune a model from a YAML config; "
        "--section.key value overrides a setting.",
    )
    parser.add_argument("-Y", "--yaml", required=True, help="path to the experiment's cfg.yaml")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped or crashed experiment from its last saved training state",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args, overrides = _parser().parse_known_args(argv)
    rank = torchrun_rank()
    main_rank = not rank  # rank 0, or the only process

    status = ExperimentStatus(
        state=RunState.RUNNING,
        pid=os.getpid(),
        pid_start_time=_process_start_time(),
        started_at=time.time(),
    )
    folder: ExperimentFolder | None = None
    log_start = 0  # where this run's lines begin in logs.log
    try:
        cfg, warnings = load_config(args.yaml, overrides)
        folder = ExperimentFolder(cfg.output_directory)
        folder.path.mkdir(parents=True, exist_ok=True)
        if not args.resume and main_rank:
            folder.logs.write_text("", encoding="utf-8")
        log_start = folder.logs.stat().st_size if folder.logs.exists() else 0
        setup_logging(folder.logs, rank)
        for warning in warnings:
            log.warning("%s: %s", args.yaml, warning)
        import torch

        result = check_config(cfg, gpu_count=torch.cuda.device_count())
        for warning in result.warnings:
            log.warning(warning)
        if result.errors:
            raise ConfigError("; ".join(result.errors))
        if main_rank:
            folder.write_status(status)

        from llm_studio.training.callbacks import load_callbacks
        from llm_studio.training.loop import run_experiment

        callbacks = load_callbacks()
        stop = _stop_on_signals()
        status = run_experiment(cfg, status, stop, resume=args.resume, callbacks=callbacks)
        return 0 if status.state == RunState.FINISHED else 130
    except USER_ERRORS as exc:
        message = str(exc)
        return _fail(folder, args.yaml, overrides, status, message, None, rank, log_start)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        detail = traceback.format_exc()
        return _fail(folder, args.yaml, overrides, status, message, detail, rank, log_start)


def _stop_on_signals() -> StopFlag:
    """A flag SIGTERM and SIGINT set: the loop finishes its step, saves and stops."""
    from llm_studio.training.loop import StopFlag

    stop = StopFlag()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("Received %s: stopping after this step", signal.Signals(signum).name)
        stop.request()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def exit_now(code: int) -> None:
    """Exit with `code` once the atexit handlers ran, skipping the interpreter's teardown of
    every module and object: with torch loaded that takes seconds on a busy machine, and a
    stopped run must be gone within 10 s. Everything is written and closed by now."""
    import atexit

    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(folder, yaml_path, overrides, status, message, detail, rank, log_start) -> int:
    """Append the error to logs.log (every rank) and write the failed status (rank 0). In DDP
    the status names the first rank that failed: when one rank fails, the others fail next,
    as their collectives break off, and its error is in logs.log by then."""
    if folder is None:
        out = _output_directory_of(yaml_path, overrides)
        folder = ExperimentFolder(out) if out is not None else None
    if folder is not None:
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
            if not rank:  # rank 0, or the only process
                other = _first_rank_error(folder.logs, log_start) if rank == 0 else None
                status.state, status.error = RunState.FAILED, other or message
                folder.write_status(status)
            tag = "" if rank is None else f"[rank {rank}] "
            with open(folder.logs, "a", encoding="utf-8") as fh:
                fh.write(f"ERROR {tag}{message}\n")
                if detail:
                    fh.write(detail)
        except OSError:
            pass
    where = f" (details in {folder.logs})" if folder is not None and detail else ""
    print(f"Error: {message}{where}", file=sys.stderr)
    return 1


def _first_rank_error(logs: Path, offset: int) -> str | None:
    """`rank N: message` of the first error another rank appended to logs.log in this run."""
    try:
        with open(logs, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(r"^ERROR \[rank ([1-9]\d*)\] (.*)$", text, flags=re.MULTILINE)
    return f"rank {match.group(1)}: {match.group(2)}" if match else None
