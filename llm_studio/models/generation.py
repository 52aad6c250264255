"""Text generation with the prediction settings: shared by validation, prompt.py and chat."""

from __future__ import annotations

import contextlib

import torch

from llm_studio.config.sections import PredictionSection
from llm_studio.data.tokenization import collate_prompts


def stop_strings(prediction_cfg: PredictionSection) -> list[str]:
    return [s.strip() for s in prediction_cfg.stop_tokens.split(",") if s.strip()]


def generation_kwargs(prediction_cfg: PredictionSection, tokenizer) -> dict:
    p = prediction_cfg
    kwargs = {
        "max_new_tokens": p.max_length_inference,
        "min_new_tokens": min(p.min_length_inference, p.max_length_inference),
        "num_beams": p.num_beams,
        "repetition_penalty": p.repetition_penalty,
        "do_sample": p.do_sample,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "use_cache": True,
    }
    if p.do_sample:
        kwargs.update(
            temperature=max(p.temperature, 1e-3),
            top_k=p.top_k,
            top_p=p.top_p,
        )
    else:
        # Greedy/beam search: neutralize sampling defaults a backbone's generation_config may carry.
        kwargs.update(temperature=None, top_k=None, top_p=None)
    if stop_strings(p):
        kwargs["stop_strings"] = stop_strings(p)
        kwargs["tokenizer"] = tokenizer
    return kwargs


def cut_at_stop(text: str, prediction_cfg: PredictionSection) -> str:
    for stop in stop_strings(prediction_cfg):
        index = text.find(stop)
        if index >= 0:
            text = text[:index]
    return text


@contextlib.contextmanager
def generating(model: torch.nn.Module):
    """Yields `generate`'s synced_gpus flag. A model sharded by FSDP (training/distributed.py)
    gathers its weights in every forward, a collective that all ranks must join: `generate`
    keeps each rank stepping until every rank is done (synced_gpus), and the outermost
    weights (embeddings, head) are gathered here, because `generate` calls the inner model and
    bypasses the outermost module's gathering hook. DeepSpeed ZeRO-3 (its parameters carry a
    `ds_id`) gathers each module's weights in hooks on every module, so synced_gpus suffices."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        first = next(model.parameters(), None)
        yield first is not None and hasattr(first, "ds_id")
        return
    model.unshard()
    try:
        yield True
    finally:
        model.reshard()


@torch.no_grad()
def generate_batch(
    model: torch.nn.Module,
    tokenizer,
    prompts: list[list[int]],
    prediction_cfg: PredictionSection,
    device: torch.device,
    streamer=None,
) -> list[str]:
    """Generate answers for token-id prompts (left-padded into one batch, KV cache on)."""
    batch = {k: v.to(device) for k, v in collate_prompts(prompts, tokenizer.pad_token_id).items()}
    was_training = model.training
    model.eval()
    try:
        with generating(model) as synced_gpus:
            output = model.generate(  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
                **batch,
                **generation_kwargs(prediction_cfg, tokenizer),
                streamer=streamer,
                synced_gpus=synced_gpus,
            )
    finally:
        model.train(was_training)
    new_tokens = output[:, batch["input_ids"].shape[1] :]
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [cut_at_stop(t, prediction_cfg).strip() for t in texts]
