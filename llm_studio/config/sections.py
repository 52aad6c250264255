"""The settings shared by every problem type, grouped in the guide's sections.

Problem types (see `problem_types.py`) subclass these sections to narrow choices or add fields.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llm_studio.config.registries import (
    CHART_LOGGERS,
    OPTIMIZERS,
    SCHEDULES,
    TEXT_LOSSES,
    TEXT_METRICS,
)
from llm_studio.config.settings import IS_SET, MachineDefault, SettingsGroup, setting

DTYPES = ("float32", "bfloat16", "float16", "int8", "int4")
SAVE_CHECKPOINT = ("last", "best", "each_evaluation_epoch", "disable")


@dataclass
class DataSourceSection(SettingsGroup):
    """Where the data comes from and how prompts are written: shared by every problem type."""

    train_dataframe: str = setting(
        "", tip="A .csv, .pq/.parquet or .json/.jsonl file with the training records."
    )
    validation_strategy: str = setting(
        "automatic",
        choices=("automatic", "custom"),
        tip="automatic: hold out a share of the train data; custom: use a separate dataframe.",
    )
    validation_dataframe: str | None = setting(
        None,
        optional=True,
        shown_if={"validation_strategy": "custom"},
        tip="The holdout dataframe used with the custom validation strategy.",
    )
    validation_size: float = setting(
        0.01,
        range=(0.0, 0.95),
        step=0.01,
        shown_if={"validation_strategy": "automatic"},
        tip="Share of the train data held out for validation (whole conversations stay "
        "together). At least 10 samples are held out (half the data when it has fewer than "
        "20) and the data sample keeps them all, so validation's Best and Worst insights, "
        "5 samples each, show different rows.",
    )
    data_sample: float = setting(
        1.0,
        range=(0.01, 1.0),
        step=0.01,
        tip="Share of the data to use. Smaller runs faster but usually learns less.",
    )
    data_sample_choice: list[str] = setting(
        ["Train", "Validation"],
        choices=("Train", "Validation"),
        multi=True,
        tip="Which dataframes the data sample applies to.",
    )
    system_column: str | None = setting(
        None, optional=True, tip="Column with a system text put in front of the whole sample."
    )
    prompt_column: list[str] = setting(
        ["instruction"], tip="One or more columns holding the user prompt."
    )
    prompt_column_separator: str = setting(
        "\n\n", tip="Joins several prompt columns; ignored with a single prompt column."
    )
    text_system_start: str = setting("<|system|>", tip="Text put before the system text.")
    text_prompt_start: str = setting("<|prompt|>", tip="Text put before each prompt.")
    text_answer_separator: str = setting(
        "<|answer|>", tip="Text put after each prompt, right before the answer."
    )
    add_eos_token_to_system: bool = setting(True, tip="End the system text with the EOS token.")
    add_eos_token_to_prompt: bool = setting(True, tip="End each prompt with the EOS token.")


@dataclass
class ChatDatasetSection(DataSourceSection):
    """Problem types that learn to write answers, possibly over chained conversations."""

    answer_column: str = setting("output", tip="Column with the expected answer.")
    parent_id_column: str | None = setting(
        None,
        optional=True,
        tip="Column naming the `id` of the previous turn, to train on chained conversations.",
    )
    add_eos_token_to_answer: bool = setting(True, tip="End each answer with the EOS token.")
    limit_chained_samples: bool = setting(
        False,
        shown_if={"parent_id_column": IS_SET},
        tip="Train only on full conversations instead of on every turn of a chain.",
    )
    personalize: bool = setting(
        False, tip="Replace the assistant's name and author in the data with yours."
    )
    chatbot_name: str = setting(
        "h2oGPT", shown_if={"personalize": True}, tip="The name the model gives itself."
    )
    chatbot_author: str = setting(
        "H2O.ai", shown_if={"personalize": True}, tip="The author the model names."
    )


@dataclass
class DatasetSection(ChatDatasetSection):
    """Causal language modeling's dataset settings."""

    mask_prompt_labels: bool = setting(
        True, tip="Train only on the answers: the loss ignores system and prompt tokens."
    )


@dataclass
class TokenizerSection(SettingsGroup):
    max_length: int = setting(
        512,
        range=(16, 16384),
        step=16,
        tip="Tokens per sample, prompt and answer together. Longer samples lose their start.",
    )
    add_prompt_answer_tokens: bool = setting(
        False, tip="Add the system, prompt and answer texts to the tokenizer as new tokens."
    )
    padding_quantile: float = setting(
        1.0,
        range=(0.0, 1.0),
        step=0.01,
        tip="Each batch is cut to this quantile of its lengths; 0 keeps every batch at max length.",
    )


def has_cuda_gpu() -> bool:
    """Whether the NVIDIA driver lists a GPU, read from /proc: the config layer (and so the UI
    process) must not import torch to know it."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def default_backbone_dtype() -> str:
    """The guide's int4 where it pays, on a GPU. On a CPU, bitsandbytes' 4-bit kernels make a
    step many times slower than float32 (the default demo showed a 10-hour ETA), and the CPU
    computes in float32 anyway."""
    return "int4" if has_cuda_gpu() else "float32"


@dataclass
class ArchitectureSection(SettingsGroup):
    backbone_dtype: str = setting(
        MachineDefault(default_backbone_dtype, "int4 with a GPU, float32 on a CPU-only machine"),
        choices=DTYPES,
        tip="Data type of the backbone's weights; int8/int4 quantize (memory for speed).",
    )
    gradient_checkpointing: bool = setting(
        True, tip="Recompute activations in the backward pass: less memory, slower steps."
    )
    intermediate_dropout: float = setting(
        0.0, range=(0.0, 0.5), step=0.05, tip="Dropout rate inside the transformer layers."
    )
    pretrained: bool = setting(
        True, tip="Start from the backbone's weights; off means random weights from its config."
    )
    pretrained_weights: str = setting(
        "", tip="Start from the weights of a previous experiment (its folder)."
    )


@dataclass
class TrainingSection(SettingsGroup):
    loss_function: str = setting(
        "TokenAveragedCrossEntropy",
        choices=TEXT_LOSSES.names,
        tip="TokenAveraged weighs every answer token equally; SampleAveraged every sample.",
    )
    optimizer: str = setting("AdamW", choices=OPTIMIZERS.names, tip="The optimization algorithm.")
    learning_rate: float = setting(
        1e-4, range=(1e-7, 1e-1), step=1e-5, log_scale=True, tip="Step size of weight updates."
    )
    differential_learning_rate_layers: list[str] = setting(
        [], tip="Layers (name substrings) that get the differential learning rate."
    )
    differential_learning_rate: float = setting(
        1e-5,
        range=(1e-7, 1e-1),
        log_scale=True,
        shown_if={"differential_learning_rate_layers": IS_SET},
        tip="Learning rate of the layers listed above.",
    )
    freeze_layers: list[str] = setting(
        [], shown_if={"lora": False}, tip="Layers (name substrings) kept frozen; without LoRA."
    )
    attention_implementation: str = setting(
        "auto",
        choices=("auto", "eager", "sdpa", "flash_attention_2"),
        tip="auto uses Flash Attention 2 when installed on a GPU, else PyTorch SDPA.",
    )
    batch_size: int = setting(2, range=(1, 256), tip="Samples per step on each GPU.")
    drop_last_batch: bool = setting(True, tip="Skip the last, incomplete training batch.")
    length_grouped_batches: bool = setting(
        True,
        tip="Batch samples of similar length together (the order stays seeded and random): "
        "batches carry less padding, so training is faster.",
    )
    epochs: int = setting(1, range=(0, 100), tip="Passes over the train data; 0 only evaluates.")
    schedule: str = setting("Cosine", choices=SCHEDULES.names, tip="How the learning rate evolves.")
    warmup_epochs: float = setting(
        0.0, range=(0.0, 10.0), step=0.05, tip="Epochs of linear warm-up from 0; may be fractional."
    )
    weight_decay: float = setting(0.0, range=(0.0, 1.0), tip="Decoupled weight decay.")
    gradient_clip: float = setting(
        0.0, range=(0.0, 100.0), tip="Clip the gradient norm to this value; 0 disables clipping."
    )
    grad_accumulation: int = setting(
        1, range=(1, 256), tip="Micro-batches whose gradients are summed before each update."
    )
    lora: bool = setting(True, tip="Train low-rank adapters (LoRA) instead of all weights.")
    use_dora: bool = setting(
        False, shown_if={"lora": True}, tip="Weight-decomposed LoRA (DoRA) instead of LoRA."
    )
    lora_r: int = setting(4, range=(1, 512), shown_if={"lora": True}, tip="Rank of the adapters.")
    lora_alpha: int = setting(
        16, range=(1, 1024), shown_if={"lora": True}, tip="Scaling of the adapter weights."
    )
    lora_dropout: float = setting(
        0.05, range=(0.0, 0.5), shown_if={"lora": True}, tip="Dropout on the adapter input."
    )
    lora_target_modules: str = setting(
        "",
        shown_if={"lora": True},
        tip="Comma-separated module names to adapt; empty means every linear layer but the head.",
    )
    lora_unfreeze_layers: list[str] = setting(
        [],
        shown_if={"lora": True},
        tip="Backbone layers (name substrings) trained fully next to the adapters.",
    )
    save_checkpoint: str = setting(
        "last", choices=SAVE_CHECKPOINT, tip="Which weights to keep: last, best, each, or none."
    )
    evaluation_epochs: float = setting(
        1.0, range=(0.01, 100.0), step=0.01, tip="Epochs between validations; may be fractional."
    )
    evaluate_before_training: bool = setting(False, tip="Validate the backbone before training.")
    train_validation_data: bool = setting(
        False, tip="Train on train and validation data together; still validate on validation."
    )


@dataclass
class AugmentationSection(SettingsGroup):
    token_mask_probability: float = setting(
        0.0, range=(0.0, 0.9), tip="Chance of replacing an input token by the mask token."
    )
    skip_parent_probability: float = setting(
        0.0, range=(0.0, 1.0), tip="Chance of dropping the earlier turns of a chain."
    )
    random_parent_probability: float = setting(
        0.0, range=(0.0, 1.0), tip="Chance of prefixing an unrelated sample as a fake history."
    )
    neftune_noise_alpha: float = setting(
        0.0, range=(0.0, 50.0), tip="NEFTune: noise added to the input embeddings in training."
    )


@dataclass
class PredictionSection(SettingsGroup):
    metric: str = setting("BLEU", choices=TEXT_METRICS.names, tip="Validation metric.")
    metric_gpt_model: str = setting(
        "gpt-3.5-turbo-0301", free_text=True, shown_if={"metric": "GPT"}, tip="Judge model name."
    )
    metric_gpt_template: str = setting(
        "general", shown_if={"metric": "GPT"}, tip="Judge prompt template from prompts/."
    )
    min_length_inference: int = setting(2, range=(0, 4096), tip="Fewest new tokens generated.")
    max_length_inference: int = setting(256, range=(1, 4096), tip="Most new tokens generated.")
    batch_size_inference: int = setting(
        0, range=(0, 512), tip="Validation batch size; 0 uses the training batch size."
    )
    do_sample: bool = setting(False, tip="Sample the next token instead of taking the likeliest.")
    num_beams: int = setting(1, range=(1, 16), tip="Beams for beam search; 1 means none.")
    temperature: float = setting(
        0.0, range=(0.0, 2.0), step=0.05, tip="Sampling temperature; higher is more random."
    )
    repetition_penalty: float = setting(
        1.0, range=(1.0, 3.0), step=0.05, tip="Penalty for repeated tokens; 1 means none."
    )
    stop_tokens: str = setting("", tip="Comma-separated texts that also end generation.")
    top_k: int = setting(0, range=(0, 1000), tip="Sample only from the k likeliest; 0 is off.")
    top_p: float = setting(
        1.0, range=(0.0, 1.0), step=0.05, tip="Sample from the smallest set of this mass."
    )
    num_history: int = setting(4, range=(0, 64), tip="Chat: how many earlier turns the model sees.")


DATA_PARALLEL_ENGINES = ("ddp", "fsdp", "deepspeed")


def data_parallel_engine(environment) -> str:
    """The engine a config asks for; `use_fsdp: true` (the guide's key) means fsdp."""
    return "fsdp" if environment.use_fsdp else environment.data_parallel_engine


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_number_of_workers() -> int:
    """Half the cores, 1 to 8: the other half computes; one worker keeps loading out of the
    training process even on one core, and past 8 a text batch gains nothing."""
    return max(1, min(8, cpu_cores() // 2))


@dataclass
class EnvironmentSection(SettingsGroup):
    gpus: list[str] = setting([], tip="GPU ids to train on; empty trains on the CPU.")
    mixed_precision: bool = setting(
        True, tip="Autocast to half precision on GPU; always off on the CPU."
    )
    compile_model: bool = setting(False, tip="Compile the model with torch.compile.")
    find_unused_parameters: bool = setting(
        False, tip="DDP: look for parameters without gradients (slower)."
    )
    data_parallel_engine: str = setting(
        "ddp",
        choices=DATA_PARALLEL_ENGINES,
        tip="How several processes share the work: ddp copies the whole model to every GPU; "
        "fsdp (torch FSDP2) shards weights, gradients and optimizer state across them, for "
        "models too large for one GPU; deepspeed (ZeRO, when the package is installed) shards "
        "optimizer state and gradients (stage 2) or the weights too (stage 3).",
    )
    fsdp_sharding: str = setting(
        "full",
        choices=("full", "hybrid"),
        shown_if={"data_parallel_engine": "fsdp"},
        tip="full shards over every process; hybrid shards within a node and replicates "
        "across nodes (less traffic between nodes).",
    )
    deepspeed_zero_stage: int = setting(
        3,
        choices=(2, 3),
        shown_if={"data_parallel_engine": "deepspeed"},
        tip="ZeRO stage: 2 shards optimizer state and gradients (every GPU keeps the whole "
        "weights); 3 shards the weights too, for models too large for one GPU.",
    )
    use_fsdp: bool = setting(
        False,
        shown_if={"data_parallel_engine": "ddp"},
        tip="Shard the model over GPUs with FSDP; the same as data_parallel_engine: fsdp.",
    )
    trust_remote_code: bool = setting(
        True, tip="Allow model code shipped with the backbone; check it first."
    )
    huggingface_branch: str = setting("main", tip="Revision (branch, tag or commit) to load.")
    number_of_workers: int = setting(
        MachineDefault(default_number_of_workers, "half the CPU cores, 1 to 8"),
        range=(0, 64),
        tip="DataLoader worker processes (per training process); 0 loads in the trainer itself.",
    )
    seed: int = setting(-1, range=(-1, 2**31 - 1), tip="Random seed; -1 draws a new one.")


@dataclass
class LoggingSection(SettingsGroup):
    logger: str = setting("None", choices=CHART_LOGGERS.names, tip="Where to send the charts too.")
    neptune_project: str = setting(
        "", shown_if={"logger": "Neptune"}, tip="Neptune project, as workspace/project."
    )
