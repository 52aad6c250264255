"""What the experiment list shows per experiment, read incrementally from its folder.

A list of hundreds of experiments refreshes every few seconds, so nothing is read twice: the
status file only when its mtime changed, the charts only from the byte offset read last time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from llm_studio.config.registries import HIGHER_IS_BETTER_METRICS
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.experiments.status import RunState

THROUGHPUT = "train/tokens_per_s"  # loss-bearing tokens per second, as training measures it


@dataclass
class ExperimentSummary:
    status: ExperimentStatus | None = None
    best: dict[str, float] = field(default_factory=dict)  # validation metric name -> best value
    tokens_per_s: float | None = None  # the latest train/tokens_per_s; None before it was written
    _status_mtime: float = -1.0
    _charts_offset: int = 0

    def best_of(self, metric: str) -> float | None:
        return self.best.get(metric)


class SummaryCache:
    """Shared by every browser session's refresh, each in a worker thread: one lock keeps a
    summary from reading the same chart lines twice or skipping some."""

    def __init__(self) -> None:
        self._entries: dict[Path, ExperimentSummary] = {}
        self._lock = threading.Lock()

    def get(self, path: str | Path) -> ExperimentSummary:
        with self._lock:
            return self._read(Path(path))

    def _read(self, path: Path) -> ExperimentSummary:
        entry = self._entries.setdefault(path, ExperimentSummary())
        folder = ExperimentFolder(path)
        try:
            mtime = folder.status_file.stat().st_mtime
        except FileNotFoundError:
            mtime = -1.0
        if mtime != entry._status_mtime:
            entry.status = folder.read_status()
            entry._status_mtime = mtime
        if entry.status is not None and entry.status.state == RunState.RUNNING:
            entry.status = folder.current_status()  # a dead process reads as failed
        try:
            size = folder.charts_file.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < entry._charts_offset:  # rewritten (a rerun or a resume): read it afresh
            entry._charts_offset, entry.best, entry.tokens_per_s = 0, {}, None
        points, entry._charts_offset = folder.read_charts(entry._charts_offset)
        for p in points:
            if p.name == THROUGHPUT:
                entry.tokens_per_s = p.value
            if not p.name.startswith("validation/") or p.name == "validation/loss":
                continue
            metric = p.name.split("/", 1)[1]
            old = entry.best.get(metric)
            better = max if metric in HIGHER_IS_BETTER_METRICS else min
            entry.best[metric] = p.value if old is None else better(old, p.value)
        return entry

    def forget(self, path: str | Path) -> None:
        with self._lock:
            self._entries.pop(Path(path), None)
