"""The training recipe, top to bottom: data -> model -> loop (forward, loss, backward, step) ->
validation -> checkpoint. Everything a watcher needs is written to the experiment folder."""

from __future__ import annotations

import functools
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from llm_studio.config.yaml_io import save_config
from llm_studio.data.prompt_format import PromptFormat
from llm_studio.data.splitting import split_and_sample
from llm_studio.data.tokenization import (
    collate_training,
    encode_for_training,
    mask_tokens,
)
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.export.checkpoint import save_checkpoint
from llm_studio.metrics.text import resolve_metric
from llm_studio.models.backbone import (
    count_parameters,
    load_backbone,
    prepare_for_training,
)
from llm_studio.models.neftune import add_neftune_noise
from llm_studio.training.losses import LOSSES
from llm_studio.training.optimizers import build_optimizer, build_scheduler
from llm_studio.training.validation import ValidationResult, validate

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


def set_seed(seed: int) -> int:
    if seed < 0:
        seed = random.SystemRandom().randrange(2**31 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def pick_device(cfg) -> torch.device:
    if cfg.environment.gpus and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def run_experiment(cfg, status: ExperimentStatus, stop: StopFlag | None = None) -> ExperimentStatus:
    stop = stop or StopFlag()
    folder = ExperimentFolder(cfg.output_directory)
    started = time.time()

    # --- setup ---
    cfg.environment.seed = set_seed(cfg.environment.seed)
    log.info("Seed: %d", cfg.environment.seed)
    device = pick_device(cfg)
    if device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
        if cfg.environment.mixed_precision:
            log.info("mixed_precision: off, because this run is on the CPU (autocast needs a GPU)")
    use_amp = device.type == "cuda" and cfg.environment.mixed_precision
    log.info("Device: %s", device)
    save_config(cfg, folder.cfg_yaml)
    folder.charts_file.unlink(missing_ok=True)  # a rerun into the same folder starts fresh charts

    data = split_and_sample(cfg, cfg.environment.seed)
    log.info("Data: %d train and %d validation samples", len(data.train), len(data.validation))
    backbone = load_backbone(cfg, device)
    tokenizer = backbone.tokenizer
    fmt = PromptFormat.from_config(cfg.dataset, tokenizer.eos_token)
    model = prepare_for_training(backbone.model, cfg)
    remove_noise = add_neftune_noise(model, cfg.augmentation.neftune_noise_alpha)
    if cfg.environment.compile_model:
        model = torch.compile(model)
    trainable, total = count_parameters(model)
    log.info("Parameters: %d trainable of %d (%.2f%%)", trainable, total, 100 * trainable / total)

    encode = functools.partial(
        encode_for_training,
        tokenizer=tokenizer,
        fmt=fmt,
        max_length=cfg.tokenizer.max_length,
        mask_prompt_labels=cfg.dataset.mask_prompt_labels,
    )
    train_samples = [encode(c) for c in data.train]
    val_samples = [encode(c) for c in data.validation]
    collate = functools.partial(
        collate_training,
        pad_id=tokenizer.pad_token_id,
        padding_quantile=cfg.tokenizer.padding_quantile,
        max_length=cfg.tokenizer.max_length,
    )
    train_loader = build_train_loader(train_samples, cfg, collate)

    # --- schedule in batches ("steps"); the optimizer steps every grad_accumulation batches ---
    tr = cfg.training
    batches_per_epoch = len(train_loader)
    total_steps = tr.epochs * batches_per_epoch
    accumulation = tr.grad_accumulation
    optimizer = build_optimizer(model, tr)
    scheduler = build_scheduler(
        optimizer,
        tr.schedule,
        warmup_steps=int(round(tr.warmup_epochs * batches_per_epoch / accumulation)),
        total_steps=max(1, math.ceil(total_steps / accumulation)),
    )
    eval_every = tr.evaluation_epochs * batches_per_epoch  # in batches, may be fractional
    next_eval = eval_every
    loss_fn = LOSSES[tr.loss_function]
    metric = resolve_metric(cfg.prediction)
    mask_gen = torch.Generator().manual_seed(cfg.environment.seed + 1)
    mask_id = _mask_token_id(tokenizer)

    status.total_steps = total_steps
    folder.write_status(status)
    best_value: float | None = None
    last_result: ValidationResult | None = None

    def evaluate(step: int, epoch: float) -> None:
        nonlocal best_value, last_result
        result = validate(model, tokenizer, fmt, data.validation, val_samples, cfg, device, metric)
        last_result = result
        folder.append_chart("validation/loss", step, result.loss, epoch)
        folder.append_chart(f"validation/{metric.name}", step, result.metric_value, epoch)
        result.write(folder, metric)
        log.info(
            "Validation at step %d (epoch %.2f): loss %.4f, %s %.4f",
            step,
            epoch,
            result.loss,
            metric.name,
            result.metric_value,
        )
        improved = best_value is None or (
            result.metric_value > best_value
            if metric.higher_is_better
            else result.metric_value < best_value
        )
        if improved:
            best_value = result.metric_value
        if tr.save_checkpoint == "best" and improved:
            _save(model, tokenizer, fmt, cfg, folder, device)
        elif tr.save_checkpoint == "each_evaluation_epoch":
            _save(model, tokenizer, fmt, cfg, folder, device)
            snapshot = folder.path / f"checkpoint_epoch_{epoch:.2f}"
            _save(model, tokenizer, fmt, cfg, folder, device, dest=snapshot, adapter=False)

    # --- loop ---
    step = 0
    if tr.evaluate_before_training or tr.epochs == 0:
        evaluate(0, 0.0)
    model.train()
    first_batch_written = False
    for epoch_index in range(tr.epochs):
        for batch in train_loader:
            if stop.requested:
                break
            if not first_batch_written:
                write_train_insights(folder, batch, tokenizer)
                first_batch_written = True
            batch = mask_tokens(batch, cfg.augmentation.token_mask_probability, mask_id, mask_gen)
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=backbone.compute_dtype, enabled=use_amp):
                logits = model(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    use_cache=False,
                ).logits
            loss = loss_fn(logits, batch["labels"])
            (loss / accumulation).backward()
            step += 1
            lr = optimizer.param_groups[0]["lr"]  # the rate this batch's update uses
            if step % accumulation == 0 or step == total_steps:
                optimizer_step(model, optimizer, scheduler, tr.gradient_clip)

            epoch = step / batches_per_epoch
            folder.append_chart("train/loss", step, loss.item(), epoch)
            folder.append_chart("train/lr", step, lr, epoch)
            _update_status(folder, status, step, total_steps, epoch, started)
            if step % max(1, batches_per_epoch // 10) == 0 or step == total_steps:
                log.info(
                    "epoch %.2f step %d/%d loss %.4f lr %.3g eta %s",
                    epoch,
                    step,
                    total_steps,
                    loss.item(),
                    lr,
                    _format_eta(status.eta_seconds),
                )
            if step >= next_eval - 1e-9 or step == total_steps:
                while next_eval <= step + 1e-9:
                    next_eval += eval_every
                evaluate(step, epoch)
                model.train()
        if stop.requested:
            break

    remove_noise()
    stopped = stop.requested
    if tr.save_checkpoint == "last" or (stopped and tr.save_checkpoint != "disable"):
        _save(model, tokenizer, fmt, cfg, folder, device)
    elif tr.save_checkpoint == "best" and not folder.checkpoint_dir.exists():
        _save(model, tokenizer, fmt, cfg, folder, device)
    if tr.save_checkpoint == "disable":
        log.info("save_checkpoint: disable, so no model is saved; chat and export are unavailable")

    status.state = "stopped" if stopped else "finished"
    status.progress = status.progress if stopped else 1.0
    status.eta_seconds = 0.0
    folder.write_status(status)
    if last_result is not None:
        log.info("Final validation %s: %.4f", metric.name, last_result.metric_value)
    log.info("Experiment %s after %.1f s", status.state, time.time() - started)
    return status


def build_train_loader(samples: list, cfg, collate) -> DataLoader:
    """Shuffled with a generator seeded from the config, so a seed fixes the batch order."""
    return DataLoader(
        samples,
        batch_size=cfg.training.batch_size,
        shuffle=True,
        drop_last=cfg.training.drop_last_batch and len(samples) >= cfg.training.batch_size,
        collate_fn=collate,
        num_workers=cfg.environment.number_of_workers,
        generator=torch.Generator().manual_seed(cfg.environment.seed),
    )


def optimizer_step(model, optimizer, scheduler, gradient_clip: float) -> None:
    """One update from the accumulated gradients; clipping first when gradient_clip > 0."""
    if gradient_clip > 0:
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], gradient_clip
        )
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


def _mask_token_id(tokenizer) -> int:
    for token_id in (tokenizer.mask_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return token_id
    return 0


def _save(model, tokenizer, fmt, cfg, folder, device, dest: Path | None = None, adapter=True):
    def reload_base():
        from transformers import AutoModelForCausalLM

        from llm_studio.models.offline_backbone import resolve_backbone

        return AutoModelForCausalLM.from_pretrained(
            resolve_backbone(cfg.llm_backbone),
            revision=cfg.environment.huggingface_branch or None,
            trust_remote_code=cfg.environment.trust_remote_code,
            dtype=torch.float32 if device.type == "cpu" else torch.bfloat16,
        )

    save_checkpoint(
        model,
        tokenizer,
        fmt,
        dest or folder.checkpoint_dir,
        adapter_dest=folder.adapter_dir if adapter else None,
        reload_base=reload_base,
    )


def _update_status(folder, status, step, total_steps, epoch, started) -> None:
    elapsed = time.time() - started
    status.step = step
    status.epoch = epoch
    status.progress = step / total_steps if total_steps else 1.0
    status.eta_seconds = elapsed / step * (total_steps - step) if step else None
    folder.write_status(status)


def _format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def write_train_insights(folder: ExperimentFolder, batch: dict, tokenizer) -> None:
    """The first batch as the model sees it: pieces of text, each marked masked or trained on."""
    samples = []
    for ids, labels, attention in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        pieces: list[dict] = []
        for token_id, label, real in zip(ids.tolist(), labels.tolist(), attention.tolist()):
            kind = "padding" if not real else ("trained" if label != -100 else "masked")
            if pieces and pieces[-1]["kind"] == kind:
                pieces[-1]["ids"].append(token_id)
            else:
                pieces.append({"kind": kind, "ids": [token_id]})
        samples.append(
            [
                {"kind": p["kind"], "text": tokenizer.decode(p["ids"], skip_special_tokens=False)}
                for p in pieces
            ]
        )
    folder.write_json(
        folder.train_insights,
        {"shape": list(batch["input_ids"].shape), "samples": samples},
    )
