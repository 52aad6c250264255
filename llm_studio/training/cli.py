"""`python train.py -Y cfg.yaml [--section.key value ...]`: load, check, run, report."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import yaml

from llm_studio.config.checks import check_config
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import load_config
from llm_studio.data.readers import DataError
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus

log = logging.getLogger("llm_studio")

# Errors whose message says everything: shown as one line, without a traceback.
USER_ERRORS = (ConfigError, DataError)


def setup_logging(logfile: Path | None) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    root.addHandler(console)
    if logfile is not None:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Fine-tune a model from a YAML config; --section.key value overrides a setting.",
    )
    parser.add_argument("-Y", "--yaml", required=True, help="path to the experiment's cfg.yaml")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped or crashed experiment from its last saved training state",
    )
    args, overrides = parser.parse_known_args(argv)

    status = ExperimentStatus(
        state="running",
        pid=os.getpid(),
        pid_start_time=_process_start_time(),
        started_at=time.time(),
    )
    folder: ExperimentFolder | None = None
    try:
        cfg, warnings = load_config(args.yaml, overrides)
        folder = ExperimentFolder(cfg.output_directory)
        folder.path.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            folder.logs.write_text("", encoding="utf-8")
        setup_logging(folder.logs)
        for warning in warnings:
            log.warning("%s: %s", args.yaml, warning)
        import torch

        result = check_config(cfg, gpu_count=torch.cuda.device_count())
        for warning in result.warnings:
            log.warning(warning)
        if result.errors:
            raise ConfigError("; ".join(result.errors))
        folder.write_status(status)

        from llm_studio.training.loop import StopFlag, run_experiment

        stop = StopFlag()

        def on_signal(signum, _frame):
            log.warning("Received %s: stopping after this step", signal.Signals(signum).name)
            stop.request()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        status = run_experiment(cfg, status, stop, resume=args.resume)
        return 0 if status.state == "finished" else 130
    except USER_ERRORS as exc:
        message = str(exc)
        return _fail(folder, args.yaml, overrides, status, message, detail=None)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return _fail(folder, args.yaml, overrides, status, message, detail=traceback.format_exc())


def _fail(folder, yaml_path, overrides, status, message, detail) -> int:
    if folder is None:
        out = _output_directory_of(yaml_path, overrides)
        folder = ExperimentFolder(out) if out is not None else None
    if folder is not None:
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
            status.state = "failed"
            status.error = message
            folder.write_status(status)
            with open(folder.logs, "a", encoding="utf-8") as fh:
                fh.write(f"ERROR {message}\n")
                if detail:
                    fh.write(detail)
        except OSError:
            pass
    where = f" (details in {folder.logs})" if folder is not None and detail else ""
    print(f"Error: {message}{where}", file=sys.stderr)
    return 1
