"""Experiment loggers: every chart point written to charts.jsonl also goes to the tracker chosen
in `logging.logger` -- Neptune, TensorBoard, or nowhere ("None").

Each logger is built as `cls(cfg, folder)` and offers `log(name, step, value)` and `close()`.
Secrets stay out of files: the Neptune API token is read from NEPTUNE_API_TOKEN and handed to the
client only; it is never a setting, so it never reaches cfg.yaml, logs.log or the tracker.
"""

from __future__ import annotations

import logging
import os
import shutil

import yaml

from llm_studio.config.base import BaseConfig
from llm_studio.config.registries import CHART_LOGGERS
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import to_dict
from llm_studio.experiments.folder import ExperimentFolder

log = logging.getLogger("llm_studio")

# Neptune modes that work without an account: nothing is sent, so no token is needed.
NEPTUNE_LOCAL_MODES = ("offline", "debug")


class ChartLogger:
    """The interface every logger offers; this base logs nothing."""

    def __init__(self, cfg: BaseConfig, folder: ExperimentFolder):
        self.cfg = cfg
        self.folder = folder

    def log(self, name: str, step: int, value: float) -> None:
        pass

    def close(self) -> None:
        pass


class NoneLogger(ChartLogger):
    """logger: None -- the charts stay in charts.jsonl only."""


class NeptuneLogger(ChartLogger):
    """Logs the config under "cfg" and each chart as a float series, e.g. run["train/loss"].

    NEPTUNE_MODE picks the connection mode (default async). Neptune queues a run's data in
    NEPTUNE_DATA_DIRECTORY (in offline mode until `neptune sync`); unless the user set it, that is
    the experiment folder's `.neptune/` (the name `neptune sync --path` wants), not `.neptune`
    in whatever the working directory is.
    """

    def __init__(self, cfg: BaseConfig, folder: ExperimentFolder):
        super().__init__(cfg, folder)
        project = cfg.logging.neptune_project.strip()
        mode = os.environ.get("NEPTUNE_MODE", "async")
        token = os.environ.get("NEPTUNE_API_TOKEN") or None
        if not project:
            raise ConfigError(
                "logging.neptune_project: the Neptune logger needs a project, as workspace/project"
            )
        if token is None and mode not in NEPTUNE_LOCAL_MODES:
            raise ConfigError(
                "NEPTUNE_API_TOKEN: the Neptune logger reads the API token from this "
                "environment variable, and it is not set (it is never a config setting)"
            )
        # Read by Neptune when the run starts; this process trains this one experiment only.
        data_dir = os.environ.get("NEPTUNE_DATA_DIRECTORY") or str(folder.path / ".neptune")
        os.environ["NEPTUNE_DATA_DIRECTORY"] = data_dir
        import neptune
        from neptune.utils import stringify_unsupported

        self.run = neptune.init_run(
            project=project,
            api_token=token,
            mode=mode,  # type: ignore[arg-type]  # NEPTUNE_MODE as the user set it; Neptune checks it
            name=cfg.experiment_name,
            # logs.log already holds the output; source and Git state are not ours to upload.
            capture_stdout=False,
            capture_stderr=False,
            source_files=[],
            git_ref=False,
        )
        self._closed = False
        # Lists (e.g. prompt columns) are not a Neptune type: they are logged as their text.
        self.run["cfg"] = stringify_unsupported(to_dict(cfg))
        where = ""
        if mode == "offline":
            where = f"; its data stays in {os.path.abspath(data_dir)} until `neptune sync`"
        log.info("Neptune logger: project %s, mode %s%s", project, mode, where)

    def log(self, name: str, step: int, value: float) -> None:
        self.run[name].append(float(value), step=step)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.run.stop()


class TensorBoardLogger(ChartLogger):
    """Event files in <experiment>/tensorboard: one scalar per chart point, the config as text."""

    def __init__(self, cfg: BaseConfig, folder: ExperimentFolder):
        super().__init__(cfg, folder)
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = folder.path / "tensorboard"
        # A rerun into the same folder starts fresh, like charts.jsonl.
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        text = yaml.safe_dump(to_dict(cfg), sort_keys=True, allow_unicode=True)
        # Indented four spaces, the text plugin's Markdown shows it as a code block.
        self.writer.add_text("cfg", "\n".join("    " + line for line in text.splitlines()))
        self._closed = False

    def log(self, name: str, step: int, value: float) -> None:
        self.writer.add_scalar(name, float(value), global_step=step)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.writer.flush()
            self.writer.close()


LOGGERS: dict[str, type[ChartLogger]] = CHART_LOGGERS.implement(
    {"None": NoneLogger, "Neptune": NeptuneLogger, "TensorBoard": TensorBoardLogger}
)


def build_logger(cfg: BaseConfig, folder: ExperimentFolder) -> ChartLogger:
    """The configured logger; an unknown name is a ConfigError naming logging.logger."""
    return LOGGERS[cfg.logging.logger](cfg, folder)
