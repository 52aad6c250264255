"""The training recipe, `FineTuneRecipe`, read top to bottom from `run`: setup (seed and device,
data, model, optimizer and schedule, the position to start from) -> train (one `train_step` per
batch, validation and resume state at the configured interval) -> finish (the last checkpoint and
the final status). Everything a watcher needs is written to the experiment folder.

Started by torchrun (distributed_train.sh), each process runs this same recipe as one rank of
DDP, FSDP or DeepSpeed; `ddp` (llm_studio/training/distributed.py) does what differs, and only
rank 0 writes. Code of your own runs at fixed points through callbacks (training/callbacks.py).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_studio.config.base import BaseConfig
from llm_studio.config.sections import PredictionSection, data_parallel_engine
from llm_studio.config.yaml_io import save_config
from llm_studio.data.splitting import SplitData, split_and_sample
from llm_studio.data.tokenization import mask_tokens
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.metrics.text import resolve_metric
from llm_studio.models.backbone import count_parameters
from llm_studio.models.neftune import add_neftune_noise
from llm_studio.training.callbacks import TrainingCallback
from llm_studio.training.checkpointing import CheckpointPolicy
from llm_studio.training.distributed import Distributed
from llm_studio.training.loggers import ChartLogger, NoneLogger, build_logger
from llm_studio.training.optimizers import build_optimizer, build_scheduler
from llm_studio.training.preprocessing import data_cache, drop_data_cache, once, read_data_once
from llm_studio.training.progress import Reporter, Throughput
from llm_studio.training.resume import (
    TrainingPosition,
    load_training_state,
    random_state,
    resume_command,
    save_training_state,
)
from llm_studio.training.tasks import build_task
from llm_studio.training.tasks.base import ValidationOutcome
from llm_studio.training.train_loader import (
    IndexedBatch,
    accumulation_windows,
    build_train_loader,
    epochs_of_batches,
    real_tokens,
)

__all__ = ["FineTuneRecipe", "StopFlag", "build_train_loader", "optimizer_step", "run_experiment"]

log = logging.getLogger("llm_studio")


@dataclass
class StopFlag:
    """Set from a signal handler; the loop finishes its step and then stops cleanly."""

    event: threading.Event = field(default_factory=threading.Event)

    def request(self) -> None:
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()


def run_experiment(
    cfg: BaseConfig,
    status: ExperimentStatus,
    stop: StopFlag | None = None,
    resume: bool = False,
    callbacks: Sequence[TrainingCallback] = (),
) -> ExperimentStatus:
    # Loggers register their close() here, so they are closed on failure too.
    with ExitStack() as cleanup:
        ddp = Distributed.from_env()  # one process, or one rank of torchrun's
        ddp.engine = data_parallel_engine(cfg.environment)
        recipe = FineTuneRecipe(cfg, status, stop or StopFlag(), resume, ddp, cleanup, callbacks)
        status = recipe.run()
        ddp.close()
        return status


class FineTuneRecipe:
    """One run of an experiment. A step is one global batch; the optimizer steps every
    grad_accumulation steps. `setup` fills in what the later methods use."""

    def __init__(
        self,
        cfg: BaseConfig,
        status: ExperimentStatus,
        stop: StopFlag,
        resume: bool,
        ddp: Distributed,
        cleanup: ExitStack,
        callbacks: Sequence[TrainingCallback] = (),
    ) -> None:
        self.cfg, self.status, self.stop, self.resume = cfg, status, stop, resume
        self.ddp, self.cleanup, self.callbacks = ddp, cleanup, list(callbacks)
        self.folder = ExperimentFolder(cfg.output_directory)
        self.checkpoints = CheckpointPolicy(cfg.training.save_checkpoint)
        self.started = time.time()

    def run(self) -> ExperimentStatus:
        self.setup()
        tr = self.cfg.training
        if (tr.evaluate_before_training or tr.epochs == 0) and self.position.step == 0:
            self.evaluate(0, 0.0)
        self.train()
        return self.finish()

    # --- setup ---
    def setup(self) -> None:
        self._setup_process()
        self._setup_data()
        self._setup_model()
        self._setup_schedule()
        self._setup_position()

    def _setup_process(self) -> None:
        """Device, seed, and the watchers: config, charts, status."""
        cfg, ddp, folder = self.cfg, self.ddp, self.folder
        self.device = pick_device(cfg, ddp.local_rank)
        ddp.start(self.device)  # joins the process group when torchrun started several processes
        cfg.environment.seed = set_seed(cfg.environment.seed, ddp)
        log.info("Seed: %d", cfg.environment.seed)
        log.info("Device: %s", self.device)
        if self.device.type == "cpu" and cfg.environment.mixed_precision:
            log.info("mixed_precision: off, because this run is on the CPU (autocast needs a GPU)")
        self.use_amp = self.device.type == "cuda" and cfg.environment.mixed_precision
        self.chart_logger: ChartLogger = NoneLogger(cfg, folder)
        if ddp.is_main:
            save_config(cfg, folder.cfg_yaml)
            if not self.resume:
                folder.charts_file.unlink(missing_ok=True)  # a rerun into the folder starts afresh
            self.chart_logger = build_logger(cfg, folder)  # after save_config: it logs the seed
        self.cleanup.callback(self.chart_logger.close)
        self.reporter = Reporter(folder, self.status, self.chart_logger, ddp.is_main)
        self.reporter.started = self.started
        self.chart = self.reporter.chart

    def _setup_data(self) -> None:
        """Read, split and sampled once (by rank 0 in DDP, into a cache the others load)."""
        self.task = build_task(self.cfg, self.device)
        self.metric = resolve_metric(self.cfg.prediction)
        self.cache = data_cache(self.ddp, self.folder.path, self.resume)
        self.data: SplitData = read_data_once(self.ddp, self.cache, self._read_data, self.task)
        prediction = self.cfg.prediction
        if (
            self.metric.name == "GPT"
            and isinstance(prediction, PredictionSection)
            and prediction.metric_gpt_template == "mt-bench"
        ):
            from llm_studio.metrics.judge import mt_bench_conversations

            self.data.validation = mt_bench_conversations()
            log.info("metric_gpt_template mt-bench: validating on the mt-bench questions")
        data = self.data
        log.info("Data: %d train and %d validation samples", len(data.train), len(data.validation))

    def _read_data(self) -> SplitData:
        for callback in self.callbacks:
            callback.on_read_data(self)
        return split_and_sample(self.cfg, self.cfg.environment.seed, self.task)

    def _setup_model(self) -> None:
        """The task's model, and the training samples (tokenized with its tokenizer)."""
        cfg, ddp = self.cfg, self.ddp
        self.backbone = self.task.load()
        if ddp.is_main and self.backbone.weights is not None:  # the truth for the model card
            self.folder.write_json(self.folder.weights_file, self.backbone.weights.to_dict())
        # Validation and saving use the model itself; training steps `trained` (`_setup_schedule`).
        self.model = self.backbone.model
        self.cleanup.callback(add_neftune_noise(self.model, cfg.augmentation.neftune_noise_alpha))
        if cfg.environment.compile_model:
            self.model = torch.compile(self.model)  # type: ignore[assignment]  # an OptimizedModule, typed as a callable
        trainable, total = count_parameters(self.model)
        log.info(
            "Parameters: %d trainable of %d (%.2f%%)", trainable, total, 100 * trainable / total
        )
        self.throughput = Throughput(total, self.device)
        self.train_samples = once(  # tokenized (unless augmentations tokenize anew each epoch)
            ddp,
            self.cache and self.cache / "train_samples.pkl",
            lambda: self.task.training_dataset(self.data.train, cfg.environment.seed),
        )
        self.train_loader = build_train_loader(
            self.train_samples, cfg, self.task.collate, ddp.world_size
        )

    def _setup_schedule(self) -> None:
        """The optimizer, and the schedule in (global) batches ("steps")."""
        # DDP wraps; FSDP shards `model` in place; DeepSpeed's engine takes model and optimizer.
        self.trained, self.optimizer = self.ddp.wrap(self.model, self.cfg, build_optimizer)
        tr = self.cfg.training
        self.batches_per_epoch = len(self.train_loader)
        self.total_steps = tr.epochs * self.batches_per_epoch
        accumulation = tr.grad_accumulation
        self.scheduler = build_scheduler(
            self.optimizer,
            tr.schedule,
            warmup_steps=int(round(tr.warmup_epochs * self.batches_per_epoch / accumulation)),
            total_steps=max(1, math.ceil(self.total_steps / accumulation)),
        )
        self.eval_every = tr.evaluation_epochs * self.batches_per_epoch  # may be fractional
        self.mask_gen = torch.Generator().manual_seed(self.cfg.environment.seed + 1)
        self.mask_id = _mask_token_id(self.backbone.tokenizer)

    def _setup_position(self) -> None:
        """Step 0, or where the run this one resumes saved its state."""
        ddp, folder = self.ddp, self.folder
        self.position = TrainingPosition(
            next_eval=self.eval_every, world_size=ddp.world_size, engine=ddp.state_engine
        )
        if self.resume:
            self.position = load_training_state(
                *(folder.resume_dir, self.model, self.optimizer, self.scheduler),
                *(self._generators(), ddp),
            )
            if ddp.is_main:
                folder.truncate_charts_after(self.position.step)
            log.info("Resuming at step %d of %d", self.position.step, self.total_steps)
        if ddp.is_main:
            self.status.total_steps = self.total_steps
            folder.write_status(self.status)

    def _generators(self) -> dict[str, torch.Generator]:
        """The recipe's own random generators, saved and restored with the resume state."""
        return {"token_mask": self.mask_gen}

    # --- training ---
    def train(self) -> None:
        """Every step from the position on, until the last or a stop."""
        self.trained.train()
        self.throughput.resume()
        for window in self._windows():
            # Each batch's loss counts by its share of the window's weight (labelled tokens or
            # samples), so accumulated batches give the gradient of one batch of them all.
            window_weight = max(sum(self.task.loss_weight(batch) for _, _, batch in window), 1)
            for epoch_index, batch_index, batch in window:
                if self.ddp.any_rank(self.stop.requested):  # every rank stops after the same step
                    return
                updates = (epoch_index, batch_index) == window[-1][:2]  # the window's last batch
                values, lr = self.train_step(batch, window_weight, updates)
                self.position.epoch_index, self.position.batch_in_epoch = (
                    epoch_index,
                    batch_index + 1,
                )
                self._report_step(values, lr)
                self._validate_if_due()
                for callback in self.callbacks:
                    callback.on_step_end(self)

    def _windows(self) -> Iterator[list[IndexedBatch]]:
        """The batches from the position on, grouped by optimizer update."""
        tr, position = self.cfg.training, self.position
        batches = epochs_of_batches(self.train_loader, self.train_samples, position, tr.epochs)
        return accumulation_windows(batches, tr.grad_accumulation, position.step, self.total_steps)

    def train_step(
        self, batch: dict[str, torch.Tensor], window_weight: float, updates: bool
    ) -> tuple[dict[str, Any], float]:
        """Forward and backward of one batch; the optimizer steps when it `updates` (the last
        batch of its accumulation window). Returns this rank's loss (a tensor, no GPU sync)
        and extras, and the learning rate the batch's update uses."""
        task, ddp, device = self.task, self.ddp, self.device
        if self.position.step == 0 and ddp.is_main:
            task.write_insights(self.folder, batch)
        probability = self.cfg.augmentation.token_mask_probability
        batch = mask_tokens(batch, probability, self.mask_id, self.mask_gen)
        self.throughput.add(task.loss_tokens(batch), real_tokens(batch))
        share = task.loss_weight(batch) / window_weight
        batch, rank_scale = ddp.rows_of_rank(batch, task.loss_weight)  # 1 process: all, 1.0
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with ddp.gradient_sync(self.trained, updates):  # accumulating batches skip the all-reduce
            dtype = self.backbone.compute_dtype
            with torch.autocast(device.type, dtype=dtype, enabled=self.use_amp):
                loss, extra = task.loss(self.trained, batch)
            ddp.backward(loss * rank_scale * share)  # DeepSpeed: its engine's
        self.position.step += 1
        lr = self.optimizer.param_groups[0]["lr"]
        if updates:
            clip = self.cfg.training.gradient_clip
            optimizer_step(self.model, self.optimizer, self.scheduler, clip, ddp.zero_engine)
        return {"loss": loss.detach() * rank_scale, **extra}, lr

    def _report_step(self, values: dict[str, Any], lr: float) -> None:
        """Charts the global batch's loss (the ranks' weighted losses average to it) and
        extras, buffered: written a few times a second, and at every tenth of an epoch."""
        step, total_steps = self.position.step, self.total_steps
        epoch = step / self.batches_per_epoch
        for name, value in self.ddp.mean_over_ranks(values).items():
            self.chart(f"train/{name}", step, value, epoch)
        self.chart("train/lr", step, lr, epoch)
        self.reporter.progress(step, total_steps, epoch)
        if step % max(1, self.batches_per_epoch // 10) == 0 or step == total_steps:
            self._report_tenth(step, epoch, lr)
        else:
            self.reporter.write_if_due()

    def _report_tenth(self, step: int, epoch: float, lr: float) -> None:
        throughput = self.throughput
        self.chart("train/tokens_per_s", step, throughput.tokens_per_s(), epoch)
        if throughput.mfu() is not None:
            self.chart("train/mfu", step, throughput.mfu(), epoch)
        self.reporter.write()
        log.info(
            "epoch %.2f step %d/%d loss %.4f lr %.3g %.0f tokens/s eta %s",
            *(epoch, step, self.total_steps, self.reporter.latest.get("train/loss", math.nan)),
            *(lr, throughput.tokens_per_s(), _format_eta(self.status.eta_seconds)),
        )

    def _validate_if_due(self) -> None:
        """Validation every evaluation_epochs and at the last step, then the resume state."""
        step, position = self.position.step, self.position
        if step < position.next_eval - 1e-9 and step != self.total_steps:
            return
        while position.next_eval <= step + 1e-9:
            position.next_eval += self.eval_every
        self.throughput.pause()  # validation and saving are not training time
        self.reporter.write()
        self.evaluate(step, step / self.batches_per_epoch)
        self.trained.train()
        if step < self.total_steps:
            self.save_state()
        self.throughput.resume()

    # --- validation and saving ---
    def evaluate(self, step: int, epoch: float) -> None:
        """Validate, chart and write the results, and save as the checkpoint policy says."""
        began = time.perf_counter()
        result = self.task.validate(self.model, self.data.validation, self.metric)
        self.chart("validation/seconds", step, time.perf_counter() - began, epoch)
        # DDP: every rank validated its share; rank 0 has the result.
        improved = result is not None and self._record_validation(result, step, epoch)
        self.reporter.write()
        improved = self.ddp.from_main(improved)  # every rank saves together (FSDP gathers shards)
        if self.checkpoints.saves_after_validation(improved):
            self.save()
        if self.checkpoints.keeps_each_validation:
            self.save(dest=self.folder.path / f"checkpoint_epoch_{epoch:.2f}", adapter=False)

    def _record_validation(self, result: ValidationOutcome, step: int, epoch: float) -> bool:
        """Chart, write and log `result`; True when it improves on the best so far."""
        metric = self.metric
        self.chart("validation/loss", step, result.loss, epoch)
        self.chart(f"validation/{metric.name}", step, result.metric_value, epoch)
        for name, value in result.charts.items():
            self.chart(f"validation/{name}", step, value, epoch)
        result.write(self.folder, metric)
        log.info(
            "Validation at step %d (epoch %.2f): loss %.4f, %s %.4f",
            *(step, epoch, result.loss, metric.name, result.metric_value),
        )
        improved = metric.improves(result.metric_value, self.position.best_value)
        if improved:
            self.position.best_value = result.metric_value
        return improved

    def save(self, dest: Path | None = None, adapter: bool = True) -> None:
        """The model into checkpoint/ (and adapter_model/), or into `dest`. FSDP and ZeRO-3:
        every rank sends its shards, so every rank calls this."""
        with self.ddp.consolidated(self.model) as whole:
            if self.ddp.is_main:
                self.task.save(whole, self.folder, dest=dest, adapter=adapter)

    def save_state(self) -> None:
        """What --resume continues from: weights, optimizer, schedule, position, RNGs."""
        ddp = self.ddp
        rngs = ddp.gather(random_state(self._generators()))  # every rank's, to resume each
        state = ddp.training_state(self.model, self.optimizer, self.folder.resume_dir)
        if ddp.is_main:
            assert state is not None and rngs is not None  # rank 0 has the state whole
            weights, optimizer_state = state
            save_training_state(
                *(self.folder.resume_dir, weights, optimizer_state),
                *(self.scheduler, self.position, rngs),
            )

    # --- the end: stopped or finished ---
    def finish(self) -> ExperimentStatus:
        self.throughput.pause()
        self.reporter.write()
        ddp, status = self.ddp, self.status
        stopped = ddp.any_rank(self.stop.requested)
        if stopped:
            self.save_state()
            how = resume_command(ddp.world_size)
            log.info("Stopped at step %d; resume with %s", self.position.step, how)
        exists = self.folder.checkpoint_dir.exists
        if self.checkpoints.saves_at_end(stopped, lambda: ddp.from_main(exists())):
            self.save()
        if self.checkpoints.disabled:
            log.info(
                "save_checkpoint: disable, so no model is saved; chat and export are unavailable"
            )
        self.chart_logger.close()  # flushed before the status says the run is over
        if not stopped:
            drop_data_cache(ddp, self.cache)
        status.state = "stopped" if stopped else "finished"
        status.progress = status.progress if stopped else 1.0
        status.eta_seconds = 0.0
        if ddp.is_main:
            self.folder.write_status(status)
        log.info("Experiment %s after %.1f s", status.state, time.time() - self.started)
        return status


def set_seed(seed: int, ddp: Distributed) -> int:
    if seed < 0:
        seed = ddp.from_main(random.SystemRandom().randrange(2**31 - 1))  # one seed for all ranks
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def pick_device(cfg: BaseConfig, local_rank: int = 0) -> torch.device:
    """The GPU of this process (the first visible one, or the LOCAL_RANK-th under torchrun)."""
    if cfg.environment.gpus and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    gradient_clip: float,
    engine: Any = None,
) -> None:
    """One update from the accumulated gradients; clipping first when gradient_clip > 0. A
    DeepSpeed `engine` holds the gradients in its partitions: it clips (gradient_clipping in its
    config), steps our optimizer and zeroes the gradients itself."""
    if engine is not None:
        engine.step()
    else:
        if gradient_clip > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], gradient_clip
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    scheduler.step()


def _mask_token_id(tokenizer: Any) -> int:
    for token_id in (tokenizer.mask_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return token_id
    return 0


def _format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return time.strftime("%H:%M:%S", time.gmtime(seconds))
