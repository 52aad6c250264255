"""Chat with a trained experiment: its checkpoint, its chat template, its prediction settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llm_studio.config.problem_types import problem_type_of
from llm_studio.config.sections import PredictionSection
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import load_config
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.models.generation import cut_at_stop, generation_kwargs

GIB = 1024**3
# Beyond the weights: the CUDA context, activations and the KV cache of a chat-length answer.
MEMORY_MARGIN = 1.2


def weights_bytes(checkpoint: Path, bytes_per_value: int = 4) -> int:
    """The bytes a checkpoint's weights take once loaded with `bytes_per_value` per number.

    Counted from the safetensors headers (no tensor is read); a checkpoint without them counts
    its weight files' size on disk.
    """
    from safetensors import safe_open

    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        return sum(f.stat().st_size for f in checkpoint.iterdir() if f.suffix in (".bin", ".pt"))
    values = 0
    for path in files:
        with safe_open(str(path), framework="numpy") as fh:
            for key in fh.keys():  # noqa: SIM118  # safe_open handles are not iterable
                count = 1
                for size in fh.get_slice(key).get_shape():
                    count *= size
                values += count
    return values * bytes_per_value


def memory_refusal(free_bytes: int, needed_bytes: int) -> str | None:
    """Why the model cannot be loaded on a GPU with `free_bytes` free, or None when it fits."""
    if free_bytes >= needed_bytes:
        return None
    return (
        f"the GPU has {free_bytes / GIB:.2f} GiB free, and this model needs about "
        f"{needed_bytes / GIB:.2f} GiB; free GPU memory (stop what else runs on it) and ask again"
    )


def free_gpu_memory(device: str) -> int:
    """Free bytes on the CUDA device (a hardware probe; tests replace it)."""
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return free


@dataclass
class ChatSession:
    model: torch.nn.Module
    tokenizer: Any  # a transformers tokenizer: its stubs type every result as a union of forms
    prediction: PredictionSection
    system: str | None = None
    history: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_experiment(cls, path: str | Path, device: str = "cpu") -> ChatSession:
        from transformers import AutoTokenizer

        from llm_studio.models.backbone import auto_model_class, compute_dtype_for

        folder = ExperimentFolder(path)
        if not folder.cfg_yaml.is_file():
            raise ConfigError(f"{folder.path}: not an experiment folder (no cfg.yaml)")
        cfg, _ = load_config(folder.cfg_yaml)
        if not problem_type_of(cfg).generates_text:
            raise ConfigError(
                f"{folder.path}: a {cfg.problem_type} experiment predicts labels, not text, "
                "so there is nothing to chat with; see docs/classification.md to predict"
            )
        if not (folder.checkpoint_dir / "config.json").is_file():
            why = (
                "save_checkpoint is 'disable'"
                if cfg.training.save_checkpoint == "disable"
                else "the experiment has not saved one yet"
            )
            raise ConfigError(f"{folder.path}: no checkpoint to chat with, because {why}")
        # The float type training computed in (bfloat16 on most GPUs, float32 on the CPU), so
        # the chat answers as validation did; quantized backbones were merged in float.
        dtype = compute_dtype_for(cfg, torch.device(device))
        if str(device).startswith("cuda"):
            needed = int(weights_bytes(folder.checkpoint_dir, dtype.itemsize) * MEMORY_MARGIN)
            refusal = memory_refusal(free_gpu_memory(device), needed)
            if refusal:
                raise ConfigError(refusal)
        tokenizer = AutoTokenizer.from_pretrained(folder.checkpoint_dir)
        model = auto_model_class(cfg).from_pretrained(folder.checkpoint_dir, dtype=dtype)
        model.to(device).eval()
        assert isinstance(cfg.prediction, PredictionSection)  # a type that generates text
        return cls(model=model, tokenizer=tokenizer, prediction=cfg.prediction)

    def messages(self, question: str) -> list[dict[str, str]]:
        keep = self.history[-self.prediction.num_history :] if self.prediction.num_history else []
        messages = [{"role": "system", "content": self.system}] if self.system else []
        for prompt, answer in keep:
            messages += [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer},
            ]
        return messages + [{"role": "user", "content": question}]

    @torch.no_grad()
    def warm_up(self) -> None:
        """Generate one token of a one-word chat, leaving no history: the first forward pass
        (lazy initialisation, memory allocation) is then paid while loading, not by the first
        question."""
        inputs = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        ).to(self.model.device)
        kwargs = generation_kwargs(self.prediction, self.tokenizer)
        kwargs.update(max_new_tokens=1, min_new_tokens=0)
        for unused in ("stop_strings", "tokenizer"):  # nothing to stop in one token
            kwargs.pop(unused, None)
        self.model.generate(**inputs, **kwargs)  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module

    @torch.no_grad()
    def ask(self, question: str, streamer=None) -> str:
        inputs = self.tokenizer.apply_chat_template(
            self.messages(question),
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        ).to(self.model.device)
        output = self.model.generate(  # type: ignore[operator]  # transformers API; torch types Module attributes as Tensor | Module
            **inputs, **generation_kwargs(self.prediction, self.tokenizer), streamer=streamer
        )
        # A decoder-only model continues the prompt; an encoder-decoder writes only the answer.
        start = 0 if self.model.config.is_encoder_decoder else inputs["input_ids"].shape[1]  # type: ignore[union-attr]  # transformers API; torch types Module attributes as Tensor | Module
        new_tokens = output[0, start:]
        answer = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        answer = cut_at_stop(answer, self.prediction).strip()
        self.history.append((question, answer))
        return answer
