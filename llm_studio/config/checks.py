"""Cross-field checks: a config can be valid key by key and still not make sense as a whole."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

from llm_studio.config.classification import label_errors
from llm_studio.config.problem_types import BaseConfig
from llm_studio.config.sections import PredictionSection, data_parallel_engine


@dataclass
class CheckResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


Report = Callable[[str], None]


def check_config(cfg: BaseConfig, gpu_count: int) -> CheckResult:
    """`gpu_count` is passed in so the UI can check a config without importing torch."""
    result = CheckResult()
    err, warn = result.errors.append, result.warnings.append
    _check_dataset(cfg, err)
    _check_model(cfg, gpu_count, err)
    _check_training(cfg, warn)
    for error in label_errors(cfg):
        err(error)
    _check_engine(cfg, err, warn)
    return result


def _check_dataset(cfg: BaseConfig, err: Report) -> None:
    ds = cfg.dataset
    if not ds.train_dataframe:
        err("dataset.train_dataframe: no train dataframe is set")
    if ds.validation_strategy == "custom" and not ds.validation_dataframe:
        err("dataset.validation_dataframe: the custom validation strategy needs a dataframe")
    if ds.validation_strategy == "automatic" and ds.validation_size <= 0:
        err("dataset.validation_size: the automatic validation strategy needs a size above 0")
    if not ds.prompt_column:
        err("dataset.prompt_column: at least one prompt column is needed")
    if not ds.answer_column:  # type: ignore[attr-defined]  # every type's dataset section has one (str or list)
        err("dataset.answer_column: an answer column is needed")


def _check_model(cfg: BaseConfig, gpu_count: int, err: Report) -> None:
    arch, env = cfg.architecture, cfg.environment
    if arch.backbone_dtype in ("int4", "int8") and not arch.pretrained:
        err(
            f"architecture.backbone_dtype: {arch.backbone_dtype} quantizes pretrained weights, "
            "so it needs architecture.pretrained: true"
        )
    if len(env.gpus) > gpu_count:
        where = f"only {gpu_count} GPU(s) exist" if gpu_count else "no GPU exists"
        err(f"environment.gpus: {len(env.gpus)} GPU(s) asked for, but {where}")
    if cfg.training.lora and cfg.training.freeze_layers:
        err("training.freeze_layers: only available without LoRA; use lora_unfreeze_layers")


def _check_training(cfg: BaseConfig, warn: Report) -> None:
    """Settings that run, but not as the user may expect: warnings only."""
    tr, prediction = cfg.training, cfg.prediction
    if (
        isinstance(prediction, PredictionSection)
        and prediction.do_sample
        and prediction.temperature == 0
    ):
        warn("prediction.temperature: 0 with do_sample makes sampling greedy; raising it to 1e-3")
    if tr.save_checkpoint == "best" and tr.evaluation_epochs > tr.epochs > 0:
        warn("training.save_checkpoint: best needs an evaluation; evaluation_epochs > epochs")
    if tr.epochs == 0 and tr.lora:
        warn("training.epochs: 0 evaluates the backbone as it is; LoRA adapters stay empty")


def _check_engine(cfg: BaseConfig, err: Report, warn: Report) -> None:
    """Combinations the sharding engine cannot run (docs/distributed.md)."""
    env, arch = cfg.environment, cfg.architecture
    engine = data_parallel_engine(env)
    if env.use_fsdp and env.data_parallel_engine not in ("ddp", "fsdp"):
        err(
            f"environment.use_fsdp: true asks for fsdp, but data_parallel_engine is "
            f"{env.data_parallel_engine}; set one of them"
        )
        return
    if engine == "ddp":
        return
    if engine == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        err(
            "environment.data_parallel_engine: deepspeed needs the deepspeed package, which is "
            "not installed; install it with `make setup` (or `DS_BUILD_OPS=0 .venv/bin/pip "
            "install deepspeed==<the version requirements.txt pins>`), or use fsdp"
        )
    name = "FSDP" if engine == "fsdp" else "DeepSpeed ZeRO"
    if arch.backbone_dtype in ("int4", "int8"):
        err(
            f"architecture.backbone_dtype: {arch.backbone_dtype} (bitsandbytes) weights cannot "
            f"be sharded by {name}; use bfloat16, float16 or float32, or data_parallel_engine: ddp"
        )
    if env.compile_model:
        err(f"environment.compile_model: not available with {name}; turn one of them off")
    if len(env.gpus) == 1:
        warn(
            f"environment.data_parallel_engine: {engine} on one GPU shards nothing; it runs as ddp"
        )
