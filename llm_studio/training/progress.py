"""What the training loop tells its watchers (charts, status.json, the chart logger), paid for a
few times a second rather than at every step, and the live throughput it reports.

Chart values may be tensors still on the GPU: they are read all at once when the buffer is
written, so a step does not wait for the GPU just to chart its loss. The buffer is written at
least every REPORT_EVERY_S, which keeps a watcher's lag well under the 2 s the experiment
folder's contract promises (docs/experiment-folder.md).
"""

from __future__ import annotations

import time

import torch

from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus

REPORT_EVERY_S = 0.5

# Dense bf16 peak FLOP/s of common training GPUs, for the MFU estimate (by name substring).
PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "A10": 125e12,
    "L4": 121e12,
    "4090": 165e12,
    "3090": 71e12,
    "V100": 125e12,
    "T4": 65e12,
}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


class Throughput:
    """Loss-bearing tokens per second of training time (validation and saving excluded), and
    on a GPU the model FLOPs utilisation: 6 x parameters x tokens processed / peak."""

    def __init__(self, parameters: int, device: torch.device):
        self.parameters = parameters
        self.peak = peak_flops(device)
        self.loss_tokens = 0
        self.all_tokens = 0
        self.seconds = 0.0
        self._since: float | None = None

    def resume(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def pause(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def add(self, loss_tokens: int, all_tokens: int) -> None:
        self.loss_tokens += loss_tokens
        self.all_tokens += all_tokens

    def _elapsed(self) -> float:
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.seconds + running

    def tokens_per_s(self) -> float:
        return self.loss_tokens / max(self._elapsed(), 1e-9)

    def mfu(self) -> float | None:
        if self.peak is None:
            return None
        return 6 * self.parameters * self.all_tokens / max(self._elapsed(), 1e-9) / self.peak


class Reporter:
    """Buffers chart points and status updates of rank 0 and writes them in one go."""

    def __init__(self, folder: ExperimentFolder, status: ExperimentStatus, logger, is_main: bool):
        self.folder = folder
        self.status = status
        self.logger = logger
        self.is_main = is_main
        self.started = time.time()
        self.pending: list[tuple[str, int, object, float]] = []
        self.latest: dict[str, float] = {}
        self._last_write = time.monotonic()
        self._status_due = False

    def chart(self, name: str, step: int, value, epoch: float) -> None:
        if self.is_main:
            self.pending.append((name, step, value, epoch))

    def progress(self, step: int, total_steps: int, epoch: float) -> None:
        """The status's step, progress and ETA (from the run's wall time)."""
        status = self.status
        status.step, status.epoch = step, epoch
        status.progress = step / total_steps if total_steps else 1.0
        elapsed = time.time() - self.started
        status.eta_seconds = elapsed / step * (total_steps - step) if step else None
        self._status_due = True

    def write_if_due(self) -> None:
        if time.monotonic() - self._last_write >= REPORT_EVERY_S:
            self.write()

    def write(self) -> None:
        """Charts first, then the status: a watcher that sees the new step finds its points."""
        self._last_write = time.monotonic()
        if not self.is_main:
            self.pending.clear()
            return
        tensors = [value for _, _, value, _ in self.pending if isinstance(value, torch.Tensor)]
        read = iter(torch.stack([t.detach().float() for t in tensors]).tolist() if tensors else [])
        points = []
        for name, step, value, epoch in self.pending:
            value = next(read) if isinstance(value, torch.Tensor) else float(value)  # type: ignore[arg-type]  # log() takes tensors and numbers
            points.append((name, step, value, epoch))
            self.latest[name] = value
        self.pending.clear()
        self.folder.append_charts(points)
        for name, step, value, _ in points:
            self.logger.log(name, step, value)
        if self._status_due:
            self.folder.write_status(self.status)
            self._status_due = False
