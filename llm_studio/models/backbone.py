"""Load the backbone and tokenizer as the config says: dtype, quantization, dropout, LoRA."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoTokenizer

from llm_studio.config.problem_types import BaseConfig, problem_type_of
from llm_studio.config.settings import ConfigError
from llm_studio.models.cpu_dropout import use_uniform_mask_dropout
from llm_studio.models.offline_backbone import resolve_backbone
from llm_studio.models.weights import WeightsReport

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DROPOUT_ATTRIBUTES = (
    "attention_dropout",
    "hidden_dropout",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "dropout",
    "dropout_rate",  # T5
    "activation_dropout",  # BART
)


def auto_model_class(cfg: BaseConfig) -> Any:  # a transformers auto class (untyped)
    """The transformers auto class of the problem type's backbone."""
    return getattr(transformers, problem_type_of(cfg).auto_model)


@dataclass
class LoadedBackbone:
    model: torch.nn.Module
    tokenizer: object
    compute_dtype: torch.dtype
    weights: WeightsReport | None = None  # what was loaded, measured on the model


def compute_dtype_for(cfg: BaseConfig, device: torch.device) -> torch.dtype:
    """The float type the weights are kept (or dequantized) in. The CPU always uses float32."""
    requested = cfg.architecture.backbone_dtype
    if device.type == "cpu":
        if requested in ("bfloat16", "float16"):
            log.info(
                "backbone_dtype %s: the CPU trains in float32 instead (far faster here)", requested
            )
        return torch.float32
    if requested in DTYPES:
        return DTYPES[requested]
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def model_source(cfg: BaseConfig) -> str:
    """Where weights and tokenizer come from: a previous experiment's checkpoint when
    `pretrained_weights` names one, else the backbone (a local copy when there is one)."""
    previous = cfg.architecture.pretrained_weights
    if not previous:
        return resolve_backbone(cfg.llm_backbone)
    for folder in (Path(previous) / "checkpoint", Path(previous)):
        if (folder / "config.json").is_file():
            return str(folder)
    raise ConfigError(
        f"architecture.pretrained_weights: {previous} holds no checkpoint "
        "(expected an experiment folder with checkpoint/ or a model folder with config.json)"
    )


def prompt_answer_tokens(cfg: BaseConfig) -> list[str]:
    ds = cfg.dataset
    texts = (ds.text_system_start, ds.text_prompt_start, ds.text_answer_separator)
    return [t for t in texts if t]


def load_tokenizer(cfg: BaseConfig):
    tokenizer = AutoTokenizer.from_pretrained(
        model_source(cfg),
        revision=_revision(cfg),
        trust_remote_code=cfg.environment.trust_remote_code,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token is None:
        raise ConfigError(f"llm_backbone {cfg.llm_backbone}: the tokenizer has no EOS token")
    if cfg.tokenizer.add_prompt_answer_tokens:
        tokenizer.add_tokens(prompt_answer_tokens(cfg))
    return tokenizer


def _revision(cfg: BaseConfig) -> str | None:
    # A revision only means something for hub names; a local folder has just one version.
    if cfg.architecture.pretrained_weights:
        return None
    return cfg.environment.huggingface_branch or None


def attention_implementation(cfg: BaseConfig, device: torch.device) -> str:
    wanted = cfg.training.attention_implementation
    flash_installed = importlib.util.find_spec("flash_attn") is not None
    if wanted == "flash_attention_2" and (device.type != "cuda" or not flash_installed):
        missing = "a GPU" if device.type != "cuda" else "the flash-attn package"
        raise ConfigError(
            f"training.attention_implementation: flash_attention_2 needs {missing}; "
            "use auto, sdpa or eager"
        )
    if wanted != "auto":
        return wanted
    return "flash_attention_2" if device.type == "cuda" and flash_installed else "sdpa"


def load_backbone(cfg: BaseConfig, device: torch.device) -> LoadedBackbone:
    dtype = compute_dtype_for(cfg, device)
    tokenizer = load_tokenizer(cfg)
    attn = attention_implementation(cfg, device)
    model = build_model(cfg, dtype, attn, len(tokenizer), quantize=True, device=device)
    weights = weights_report(model, cfg.architecture.backbone_dtype, dtype)
    log.info("Loaded %s (attention: %s)", model_source(cfg), attn)
    log.info("Backbone weights: %s", weights.summary())
    return LoadedBackbone(model=model, tokenizer=tokenizer, compute_dtype=dtype, weights=weights)


def weights_report(model: torch.nn.Module, requested: str, dtype: torch.dtype) -> WeightsReport:
    """The linear layers as loaded: which are bitsandbytes-quantized, and how they are stored."""
    report = WeightsReport(requested=requested, compute_dtype=str(dtype).removeprefix("torch."))
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        kind = type(module)
        library = kind.__module__.split(".")[0]
        name = f"{library} {kind.__name__}"
        report.linear_layers[name] = report.linear_layers.get(name, 0) + 1
        stored = str(module.weight.dtype).removeprefix("torch.")
        report.storage[stored] = report.storage.get(stored, 0) + 1
        if library == "bitsandbytes":
            report.quantized_layers += 1
            report.quant_type = getattr(module.weight, "quant_type", None) or report.quant_type
    return report


def build_model(
    cfg,
    dtype: torch.dtype,
    attn: str,
    vocab_size: int,
    quantize: bool,
    device: torch.device,
) -> torch.nn.Module:
    """The backbone with the config's dropout, quantization and vocabulary size.

    Called again without quantization to fold a quantized run's adapter into float weights, so
    everything here must come out the same both times (no randomness).
    """
    source = model_source(cfg)
    revision = _revision(cfg)
    trust = cfg.environment.trust_remote_code
    config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust)
    for name in DROPOUT_ATTRIBUTES:
        if hasattr(config, name) and isinstance(getattr(config, name), float):
            setattr(config, name, cfg.architecture.intermediate_dropout)
    config.use_cache = False

    if cfg.architecture.pretrained:
        kwargs = {}
        quant = quantization_config(cfg, dtype) if quantize else None
        if quant is not None:
            kwargs["quantization_config"] = quant
            kwargs["device_map"] = {"": device}
        model = auto_model_class(cfg).from_pretrained(
            source,
            config=config,
            revision=revision,
            trust_remote_code=trust,
            dtype=dtype,
            attn_implementation=attn,
            **kwargs,
        )
    else:
        model = auto_model_class(cfg).from_config(
            config, dtype=dtype, trust_remote_code=trust, attn_implementation=attn
        )
    if vocab_size > model.get_input_embeddings().weight.shape[0]:
        _grow_vocabulary(model, vocab_size)
    if not is_quantized(model):
        model.to(device)
    return model


def _grow_vocabulary(model: torch.nn.Module, vocab_size: int) -> None:
    """New token rows start at the mean of the old rows: deterministic, and a neutral start."""
    old = model.get_input_embeddings().weight.shape[0]  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
    model.resize_token_embeddings(vocab_size, mean_resizing=False)  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
    with torch.no_grad():
        for layer in (model.get_input_embeddings(), model.get_output_embeddings()):  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
            if layer is not None and layer.weight.shape[0] == vocab_size:
                layer.weight[old:] = layer.weight[:old].float().mean(0).to(layer.weight.dtype)


def is_quantized(model: torch.nn.Module) -> bool:
    return bool(
        getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False)
    )


def quantization_config(cfg: BaseConfig, compute_dtype: torch.dtype):
    kind = cfg.architecture.backbone_dtype
    if kind not in ("int8", "int4"):
        return None
    from transformers import BitsAndBytesConfig

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_use_double_quant=False,
    )


def _matches(name: str, patterns: list[str]) -> bool:
    return any(p and p in name for p in patterns)


def prepare_for_training(model: torch.nn.Module, cfg: BaseConfig) -> torch.nn.Module:
    """Wrap in LoRA/DoRA (or freeze layers) and turn on gradient checkpointing."""
    tr = cfg.training
    quantized = is_quantized(model)
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.architecture.gradient_checkpointing
        )
    elif cfg.architecture.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module

    if tr.lora:
        model = with_lora(model, cfg)
    else:
        _set_trainable(model, tr.freeze_layers, False)
    if cfg.architecture.gradient_checkpointing and tr.lora and not quantized:
        # Checkpointed blocks need an input that requires grad when the embeddings are frozen.
        model.enable_input_require_grads()  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
    return model


def with_lora(model: torch.nn.Module, cfg: BaseConfig) -> torch.nn.Module:
    """The model wrapped in LoRA/DoRA adapters of the problem type's PEFT task type, with
    `lora_unfreeze_layers` trained in full beside them."""
    from peft import LoraConfig, get_peft_model

    tr = cfg.training
    targets = [t.strip() for t in tr.lora_target_modules.split(",") if t.strip()]
    lora_config = LoraConfig(
        r=tr.lora_r,
        lora_alpha=tr.lora_alpha,
        lora_dropout=tr.lora_dropout,
        target_modules=targets or "all-linear",
        use_dora=tr.use_dora,
        bias="none",
        task_type=problem_type_of(cfg).peft_task_type,
    )
    model = get_peft_model(model, lora_config)
    if next(model.parameters()).device.type == "cpu":
        use_uniform_mask_dropout(model)
    _set_trainable(model, tr.lora_unfreeze_layers, True, skip="lora_")
    return model


def _set_trainable(
    model: torch.nn.Module, patterns: list[str], trainable: bool, skip: str | None = None
) -> None:
    """Parameters whose names contain one of `patterns` (and not `skip`) train or not."""
    for name, param in model.named_parameters():
        if _matches(name, patterns) and not (skip and skip in name):
            param.requires_grad = trainable


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
