"""The training recipe, top to bottom: data -> model -> loop (forward, loss, backward, step) ->
validation -> checkpoint. Everything a watcher needs is written to the experiment folder.

Started by torchrun (distributed_train.sh), each process runs this same recipe as one rank of
DDP, FSDP or DeepSpeed; `ddp` (llm_studio/training/distributed.py) does what differs, and only
rank 0 writes."""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from llm_studio.config.base import BaseConfig
from llm_studio.config.sections import data_parallel_engine
from llm_studio.config.yaml_io import save_config
from llm_studio.data.batching import EpochBatches, sample_length
from llm_studio.data.readers import DataError
from llm_studio.data.splitting import split_and_sample
from llm_studio.data.tokenization import mask_tokens
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.metrics.text import resolve_metric
from llm_studio.models.backbone import count_parameters
from llm_studio.models.neftune import add_neftune_noise
from llm_studio.training.distributed import Distributed
from llm_studio.training.loader_workers import ignore_stop_signals
from llm_studio.training.loggers import NoneLogger, build_logger
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

log = logging.getLogger("llm_studio")

# Test hook: deliver this signal to ourselves after the given step ("SIGTERM:5"), or raise a
# RuntimeError there ("error:5"), to exercise clean stops and crashes exactly where a test wants
# them; with FAULT_RANK_ENV set, only on that rank of a distributed run.
FAULT_ENV = "LLM_STUDIO_FAULT_AT_STEP"
FAULT_RANK_ENV = "LLM_STUDIO_FAULT_RANK"
# Test hook: rank 0 of a distributed run reads the data this many seconds late (a large dataset).
DATA_DELAY_ENV = "LLM_STUDIO_DATA_DELAY_S"


@dataclass
class StopFlag:
    """Set from a signal handler; the loop finishes its step and then stops cleanly."""

    event: threading.Event = field(default_factory=threading.Event)

    def request(self) -> None:
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()


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


def run_experiment(
    cfg, status: ExperimentStatus, stop: StopFlag | None = None, resume: bool = False
) -> ExperimentStatus:
    # Loggers register their close() here, so they are closed on failure too.
    with ExitStack() as cleanup:
        ddp = Distributed.from_env()  # one process, or one rank of torchrun's
        ddp.engine = data_parallel_engine(cfg.environment)
        status = _run(cfg, status, stop or StopFlag(), resume, cleanup, ddp)
        ddp.close()
        return status


def _run(
    cfg,
    status: ExperimentStatus,
    stop: StopFlag,
    resume: bool,
    cleanup: ExitStack,
    ddp: Distributed,
):
    folder = ExperimentFolder(cfg.output_directory)
    started = time.time()

    # --- setup ---
    device = pick_device(cfg, ddp.local_rank)
    ddp.start(device)  # joins the process group when torchrun started several processes
    cfg.environment.seed = set_seed(cfg.environment.seed, ddp)
    log.info("Seed: %d", cfg.environment.seed)
    log.info("Device: %s", device)
    if device.type == "cpu" and cfg.environment.mixed_precision:
        log.info("mixed_precision: off, because this run is on the CPU (autocast needs a GPU)")
    use_amp = device.type == "cuda" and cfg.environment.mixed_precision
    chart_logger = NoneLogger(cfg, folder)
    if ddp.is_main:
        save_config(cfg, folder.cfg_yaml)
        if not resume:
            folder.charts_file.unlink(missing_ok=True)  # a rerun into the same folder starts afresh
        chart_logger = build_logger(cfg, folder)  # after save_config: it logs the seed drawn for -1
    cleanup.callback(chart_logger.close)
    reporter = Reporter(folder, status, chart_logger, ddp.is_main)
    reporter.started = started
    chart = reporter.chart

    # --- data: read, split and sampled once (by rank 0 in DDP) ---
    task = build_task(cfg, device)
    metric = resolve_metric(cfg.prediction)
    cache = data_cache(ddp, folder.path, resume)  # DDP: rank 0 preprocesses, the others load
    data = read_data_once(ddp, cache, lambda: _read_data(cfg, task, ddp), task)
    if metric.name == "GPT" and cfg.prediction.metric_gpt_template == "mt-bench":
        from llm_studio.metrics.judge import mt_bench_conversations

        data.validation = mt_bench_conversations()
        log.info("metric_gpt_template mt-bench: validating on the mt-bench questions")
    log.info("Data: %d train and %d validation samples", len(data.train), len(data.validation))

    # --- model ---
    backbone = task.load()
    if ddp.is_main and backbone.weights is not None:  # the truth for the model card
        folder.write_json(folder.weights_file, backbone.weights.to_dict())
    model = backbone.model  # validation and saving use the model itself; training steps `trained`
    remove_noise = add_neftune_noise(model, cfg.augmentation.neftune_noise_alpha)
    cleanup.callback(remove_noise)
    if cfg.environment.compile_model:
        model = torch.compile(model)
    trainable, total = count_parameters(model)
    log.info("Parameters: %d trainable of %d (%.2f%%)", trainable, total, 100 * trainable / total)
    train_samples = once(  # tokenized (unless augmentations tokenize anew each epoch)
        ddp,
        cache and cache / "train_samples.pkl",
        lambda: task.training_dataset(data.train, cfg.environment.seed),
    )
    train_loader = build_train_loader(train_samples, cfg, task.collate, ddp.world_size)
    # DDP wraps; FSDP shards `model` in place; DeepSpeed's engine takes model and optimizer.
    trained, optimizer = ddp.wrap(model, cfg, build_optimizer)

    # --- schedule in (global) batches ("steps"); the optimizer steps every grad_accumulation ---
    tr = cfg.training
    batches_per_epoch = len(train_loader)
    total_steps = tr.epochs * batches_per_epoch
    accumulation = tr.grad_accumulation
    scheduler = build_scheduler(
        optimizer,
        tr.schedule,
        warmup_steps=int(round(tr.warmup_epochs * batches_per_epoch / accumulation)),
        total_steps=max(1, math.ceil(total_steps / accumulation)),
    )
    eval_every = tr.evaluation_epochs * batches_per_epoch  # in batches, may be fractional
    mask_gen = torch.Generator().manual_seed(cfg.environment.seed + 1)
    mask_id = _mask_token_id(backbone.tokenizer)
    generators = {"token_mask": mask_gen}

    position = TrainingPosition(
        next_eval=eval_every, world_size=ddp.world_size, engine=ddp.state_engine
    )
    if resume:
        position = load_training_state(
            folder.resume_dir, model, optimizer, scheduler, generators, ddp
        )
        if ddp.is_main:
            folder.truncate_charts_after(position.step)
        log.info("Resuming at step %d of %d", position.step, total_steps)
    if ddp.is_main:
        status.total_steps = total_steps
        folder.write_status(status)

    def save(dest=None, adapter=True) -> None:
        with ddp.consolidated(model) as whole:  # FSDP, ZeRO-3: every rank sends its shards
            if ddp.is_main:
                task.save(whole, folder, dest=dest, adapter=adapter)

    def evaluate(step: int, epoch: float) -> None:
        began = time.perf_counter()
        result = task.validate(model, data.validation, metric)
        chart("validation/seconds", step, time.perf_counter() - began, epoch)
        improved = False
        if result is not None:  # DDP: every rank validated its share; rank 0 has the result
            chart("validation/loss", step, result.loss, epoch)
            chart(f"validation/{metric.name}", step, result.metric_value, epoch)
            for name, value in result.charts.items():
                chart(f"validation/{name}", step, value, epoch)
            result.write(folder, metric)
            log.info(
                "Validation at step %d (epoch %.2f): loss %.4f, %s %.4f",
                *(step, epoch, result.loss, metric.name, result.metric_value),
            )
            improved = metric.improves(result.metric_value, position.best_value)
            if improved:
                position.best_value = result.metric_value
        reporter.write()
        improved = ddp.from_main(improved)  # every rank saves together (FSDP gathers shards)
        if tr.save_checkpoint == "best" and improved:
            save()
        elif tr.save_checkpoint == "each_evaluation_epoch":
            save()
            save(dest=folder.path / f"checkpoint_epoch_{epoch:.2f}", adapter=False)

    def save_state() -> None:
        rngs = ddp.gather(random_state(generators))  # every rank's, to resume each as it was
        state = ddp.training_state(model, optimizer, folder.resume_dir)  # whole, on rank 0
        if ddp.is_main:
            save_training_state(folder.resume_dir, *state, scheduler, position, rngs)

    # --- loop ---
    if (tr.evaluate_before_training or tr.epochs == 0) and position.step == 0:
        evaluate(0, 0.0)
    trained.train()
    throughput = Throughput(total, device)
    throughput.resume()
    batches = _epochs_of_batches(train_loader, train_samples, position, tr.epochs)
    stopping = False
    for window in _accumulation_windows(batches, accumulation, position.step, total_steps):
        # Each batch's loss counts by its share of the window's weight (labelled tokens or
        # samples), so accumulated batches give the gradient of one batch of them all.
        window_weight = max(sum(task.loss_weight(batch) for _, _, batch in window), 1)
        for epoch_index, batch_index, batch in window:
            stopping = ddp.any_rank(stop.requested)  # every rank stops after the same step
            if stopping:
                break
            if position.step == 0 and ddp.is_main:
                task.write_insights(folder, batch)
            batch = mask_tokens(batch, cfg.augmentation.token_mask_probability, mask_id, mask_gen)
            throughput.add(task.loss_tokens(batch), _real_tokens(batch))
            share = task.loss_weight(batch) / window_weight
            batch, rank_scale = ddp.rows_of_rank(batch, task.loss_weight)  # 1 process: all, 1.0
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            updates = (epoch_index, batch_index) == window[-1][:2]  # the window's last batch
            with ddp.gradient_sync(trained, updates):  # accumulating batches skip the all-reduce
                with torch.autocast(device.type, dtype=backbone.compute_dtype, enabled=use_amp):
                    loss, extra = task.loss(trained, batch)
                ddp.backward(loss * rank_scale * share)  # DeepSpeed: its engine's
            position.step += 1
            step = position.step
            lr = optimizer.param_groups[0]["lr"]  # the rate this batch's update uses
            if updates:
                optimizer_step(model, optimizer, scheduler, tr.gradient_clip, ddp.zero_engine)
            position.epoch_index, position.batch_in_epoch = epoch_index, batch_index + 1

            # The global batch's loss (the ranks' weighted losses average to it) and extras;
            # in one process the loss stays a tensor until the reporter writes (no GPU sync).
            values = ddp.mean_over_ranks({"loss": loss.detach() * rank_scale, **extra})
            epoch = step / batches_per_epoch
            for name, value in values.items():
                chart(f"train/{name}", step, value, epoch)
            chart("train/lr", step, lr, epoch)
            reporter.progress(step, total_steps, epoch)
            tenth = step % max(1, batches_per_epoch // 10) == 0 or step == total_steps
            if tenth:
                chart("train/tokens_per_s", step, throughput.tokens_per_s(), epoch)
                if throughput.mfu() is not None:
                    chart("train/mfu", step, throughput.mfu(), epoch)
                reporter.write()
                log.info(
                    "epoch %.2f step %d/%d loss %.4f lr %.3g %.0f tokens/s eta %s",
                    *(epoch, step, total_steps, reporter.latest.get("train/loss", math.nan), lr),
                    *(throughput.tokens_per_s(), _format_eta(status.eta_seconds)),
                )
            else:
                reporter.write_if_due()
            if step >= position.next_eval - 1e-9 or step == total_steps:
                while position.next_eval <= step + 1e-9:
                    position.next_eval += eval_every
                throughput.pause()
                reporter.write()
                evaluate(step, epoch)
                trained.train()
                if step < total_steps:
                    save_state()
                throughput.resume()
            _fault_hook(step, ddp.rank)
        if stopping:
            break
    throughput.pause()
    reporter.write()

    # --- the end: stopped or finished ---
    stopped = ddp.any_rank(stop.requested)
    if stopped:
        save_state()
        how = resume_command(ddp.world_size)
        log.info("Stopped at step %d; resume with %s", position.step, how)
    if (
        tr.save_checkpoint == "last"
        or (stopped and tr.save_checkpoint != "disable")
        or tr.save_checkpoint == "best"
        and ddp.from_main(not folder.checkpoint_dir.exists())
    ):
        save()
    if tr.save_checkpoint == "disable":
        log.info("save_checkpoint: disable, so no model is saved; chat and export are unavailable")
    chart_logger.close()  # flushed before the status says the run is over

    if not stopped:
        drop_data_cache(ddp, cache)
    status.state = "stopped" if stopped else "finished"
    status.progress = status.progress if stopped else 1.0
    status.eta_seconds = 0.0
    if ddp.is_main:
        folder.write_status(status)
    log.info("Experiment %s after %.1f s", status.state, time.time() - started)
    return status


def build_train_loader(samples, cfg: BaseConfig, collate, world_size: int = 1) -> DataLoader:
    """Shuffled by (seed, epoch) (`EpochBatches`), so a seed fixes the batch order; with
    length_grouped_batches, each batch holds samples of similar length.

    A batch is the global batch, batch_size per process x processes: in DDP every rank loads
    it and keeps its own rows, so the batches are those of one process of that batch size. A
    last batch too small to give every rank a row is left out.
    """
    batch_size = cfg.training.batch_size * world_size
    drop_last = cfg.training.drop_last_batch and len(samples) >= batch_size
    if 0 < len(samples) % batch_size < world_size:
        log.info(
            "The last %d training samples of each epoch are left out: fewer than one per process",
            len(samples) % batch_size,
        )
        drop_last = True
    order = EpochBatches(
        [sample_length(samples[i]) for i in range(len(samples))],
        batch_size,
        cfg.environment.seed,
        drop_last,
        group_by_length=cfg.training.length_grouped_batches,
    )
    loader = DataLoader(
        samples,
        batch_sampler=order,
        collate_fn=collate,
        num_workers=cfg.environment.number_of_workers,
        worker_init_fn=ignore_stop_signals,  # a stop is the trainer's to carry out, not theirs
        # Its own generator seeds the workers: drawing from the global RNG instead would
        # shift dropout's random stream and break exact resumes.
        generator=torch.Generator().manual_seed(cfg.environment.seed),
    )
    if len(loader) == 0:
        raise DataError(f"{len(samples)} training samples cannot feed {world_size} processes")
    return loader


def optimizer_step(model, optimizer, scheduler, gradient_clip: float, engine=None) -> None:
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


def _epochs_of_batches(loader: DataLoader, samples, position, epochs: int):
    """(epoch index, batch index, batch) of every epoch from the resume position on."""
    for epoch_index in range(position.epoch_index, epochs):
        # Seeded per epoch, so a resumed run sees the same batches in the same order.
        start = position.batch_in_epoch if epoch_index == position.epoch_index else 0
        loader.batch_sampler.set_epoch(epoch_index, start=start)
        samples.set_epoch(epoch_index)
        for offset, batch in enumerate(loader):
            yield epoch_index, start + offset, batch


def _accumulation_windows(batches, accumulation: int, step: int, total_steps: int):
    """The batches grouped by optimizer update: one ends every `accumulation` global steps
    and at the last step (a window may span two epochs)."""
    window = []
    for item in batches:
        window.append(item)
        step += 1
        if step % accumulation == 0 or step == total_steps:
            yield window
            window = []
    if window:
        yield window


def _real_tokens(batch: dict) -> int:
    """Tokens of a batch that are not padding (DPO's chosen and rejected together)."""
    return sum(int(v.sum()) for k, v in batch.items() if k.endswith("attention_mask"))


def _mask_token_id(tokenizer) -> int:
    for token_id in (tokenizer.mask_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return token_id
    return 0


def _format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def _read_data(cfg: BaseConfig, task, ddp: Distributed):
    delay = float(os.environ.get(DATA_DELAY_ENV, 0))
    if delay and ddp.active:
        log.info("%s: rank 0 reads the data after %.0f s", DATA_DELAY_ENV, delay)
        time.sleep(delay)
    return split_and_sample(cfg, cfg.environment.seed, task)


def _fault_hook(step: int, rank: int) -> None:
    wanted = os.environ.get(FAULT_ENV)
    only_rank = os.environ.get(FAULT_RANK_ENV)
    if wanted and (not only_rank or int(only_rank) == rank):
        name, _, at = wanted.partition(":")
        if at and int(at) == step and name == "error":
            raise RuntimeError(f"{FAULT_ENV}: fault injected on rank {rank} at step {step}")
        if at and int(at) == step:
            os.kill(os.getpid(), getattr(signal, name))
