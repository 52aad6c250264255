"""The experiment folder: the contract between a training process and whoever watches it.

Written by training, read by the CLI and the UI; documented in docs/experiment-folder.md.
Every file is either replaced atomically (write a temp file, then rename) or only appended to
in whole lines, so a reader never sees half a record. No torch import here: the UI uses it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llm_studio.atomic import write_json_atomic, write_text_atomic
from llm_studio.experiments.status import RunState, process_alive

__all__ = ["ChartPoint", "ExperimentFolder", "ExperimentStatus", "RunState", "process_alive"]


@dataclass
class ExperimentStatus:
    state: str = RunState.QUEUED  # read back as the plain string status.json holds
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    progress: float = 0.0
    eta_seconds: float | None = None
    error: str | None = None
    pid: int | None = None
    # The process start time (seconds since the epoch) tells a live PID from a reused one.
    pid_start_time: float | None = None
    started_at: float | None = None
    updated_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ChartPoint:
    name: str
    step: int
    value: float
    epoch: float


class ExperimentFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # File names are part of the contract.
    @property
    def cfg_yaml(self) -> Path:
        return self.path / "cfg.yaml"

    @property
    def logs(self) -> Path:
        return self.path / "logs.log"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def charts_file(self) -> Path:
        return self.path / "charts.jsonl"

    @property
    def train_insights(self) -> Path:
        return self.path / "train_data_insights.json"

    @property
    def predictions_csv(self) -> Path:
        return self.path / "validation_predictions.csv"

    @property
    def prediction_insights(self) -> Path:
        return self.path / "validation_prediction_insights.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter_model"

    @property
    def weights_file(self) -> Path:
        return self.path / "weights.json"

    @property
    def resume_dir(self) -> Path:
        return self.path / "resume"

    # --- status ---
    def write_status(self, status: ExperimentStatus) -> None:
        status.updated_at = time.time()
        write_text_atomic(self.status_file, json.dumps(asdict(status), indent=1))

    def read_status(self) -> ExperimentStatus | None:
        try:
            data = json.loads(self.status_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        known = ExperimentStatus.__dataclass_fields__
        return ExperimentStatus(**{k: v for k, v in data.items() if k in known})

    def current_status(self) -> ExperimentStatus | None:
        """The status as a watcher should show it: a run whose process is gone is failed."""
        status = self.read_status()
        if status is None or status.state != RunState.RUNNING:
            return status
        if not process_alive(status.pid, status.pid_start_time):
            status.state = RunState.FAILED
            status.error = status.error or "the training process ended without a word (killed?)"
        return status

    # --- charts: one JSON object per line, appended ---
    def append_chart(self, name: str, step: int, value: float, epoch: float) -> None:
        self.append_charts([(name, step, value, epoch)])

    def append_charts(self, points: list[tuple[str, int, float, float]]) -> None:
        """Several (name, step, value, epoch) points, appended as whole lines in one write."""
        if not points:
            return
        lines = "".join(
            json.dumps({"name": n, "step": s, "value": float(v), "epoch": e}) + "\n"
            for n, s, v, e in points
        )
        with open(self.charts_file, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()

    def read_charts(self, offset: int = 0) -> tuple[list[ChartPoint], int]:
        """Points written after byte `offset`, and the offset to pass next time.

        A line still being written (no newline yet) is left for the next call.
        """
        try:
            with open(self.charts_file, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return [], offset
        complete = data[: data.rfind(b"\n") + 1]
        points = [ChartPoint(**json.loads(line)) for line in complete.splitlines() if line]
        return points, offset + len(complete)

    def truncate_charts_after(self, step: int) -> None:
        """Drop points past `step`: a resumed run rewrites them."""
        points, _ = self.read_charts()
        kept = [p for p in points if p.step <= step]
        write_text_atomic(self.charts_file, "".join(json.dumps(asdict(p)) + "\n" for p in kept))

    # --- insights ---
    def write_json(self, path: Path, data: Any) -> None:
        write_json_atomic(path, data)
