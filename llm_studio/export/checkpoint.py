"""Save what training produced as standard formats: a merged HF model folder and a PEFT adapter."""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
from pathlib import Path

import torch

from llm_studio.atomic import replace_dir
from llm_studio.data.prompt_format import PromptFormat
from llm_studio.models.backbone import is_quantized

log = logging.getLogger(__name__)


def is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


def save_tokenizer(tokenizer, fmt: PromptFormat, dest: Path) -> None:
    tokenizer.chat_template = fmt.chat_template()
    tokenizer.save_pretrained(dest)


def merged_model(model: torch.nn.Module, reload_base=None) -> torch.nn.Module:
    """A plain transformers model with the LoRA weights folded in; the training model is untouched.

    A quantized backbone cannot hold merged float weights, so `reload_base()` loads it again in
    float and the trained adapter weights are applied to that copy.
    """
    if not is_peft(model):
        return model
    if is_quantized(model):
        from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

        base = reload_base()
        config = copy.deepcopy(model.peft_config["default"])  # type: ignore[index]  # transformers API; torch types Module attributes as Tensor | Module
        clean = get_peft_model(base, config)  # type: ignore[arg-type]  # transformers API; torch types Module attributes as Tensor | Module
        set_peft_model_state_dict(clean, get_peft_model_state_dict(model))
        return clean.merge_and_unload()
    return copy.deepcopy(model).merge_and_unload()  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module


def save_checkpoint(
    model: torch.nn.Module,
    tokenizer,
    fmt: PromptFormat,
    dest: Path,
    adapter_dest: Path | None = None,
    reload_base=None,
) -> None:
    """Write `dest` as an HF folder (model with LoRA merged, tokenizer with the chat template).

    With LoRA, the adapter alone also goes to `adapter_dest` in PEFT format.
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the model; save the original
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        merged = merged_model(model, reload_base)
        merged.config.use_cache = True  # type: ignore[union-attr]  # transformers API; torch types Module attributes as Tensor | Module
        generation_config = getattr(merged, "generation_config", None)
        if generation_config is not None:
            generation_config.eos_token_id = tokenizer.eos_token_id
            generation_config.pad_token_id = tokenizer.pad_token_id
        merged.save_pretrained(tmp, safe_serialization=True)  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
        save_tokenizer(tokenizer, fmt, tmp)
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if adapter_dest is not None and is_peft(model):
        tmp = Path(tempfile.mkdtemp(dir=adapter_dest.parent, prefix=f".{adapter_dest.name}."))
        try:
            model.save_pretrained(tmp)  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
            replace_dir(tmp, adapter_dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("Saved checkpoint to %s", dest)
