"""The model card (README.md) that travels with an exported model, written from the experiment.

Everything comes from the experiment folder: `cfg.yaml` for the settings, `charts.jsonl` for the
validation results and the checkpoint's tokenizer for the end-of-sequence token. Only chosen
settings are written, never the whole config, and data files appear by file name only, so the
card holds no secret and no local folder layout. No torch import: the UI renders cards too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from llm_studio.config.problem_types import BaseConfig, problem_type_of
from llm_studio.config.sections import PredictionSection
from llm_studio.config.yaml_io import load_config
from llm_studio.data.prompt_format import Conversation, PromptFormat
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.models.weights import WeightsReport

# A Hub model id: "name" or "owner/name" of letters, digits, '-', '_' and '.'.
_HUB_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]+$")
EXAMPLE_QUESTION = "How are you?"


def looks_like_hub_id(name: str) -> bool:
    """True for a Hub model id, false for a local folder (those have no place in Hub metadata)."""
    return bool(name) and bool(_HUB_ID.match(name)) and not Path(name).is_absolute()


def build_model_card(
    folder: str | Path, model_name: str | None = None, adapter: bool = False
) -> str:
    """The README.md text for the exported model of the experiment in `folder`.

    `model_name` is what the usage example loads: the Hub repo id when publishing, otherwise a
    placeholder for the unzipped folder. `adapter=True` writes the card of the LoRA adapter alone.
    """
    exp = ExperimentFolder(folder)
    cfg, _ = load_config(exp.cfg_yaml)
    eos = _eos_token(exp.checkpoint_dir) or _eos_token(exp.adapter_dir) or "</s>"
    name = model_name or ("path/to/unzipped/adapter" if adapter else "path/to/unzipped/model")
    parts = [
        _front_matter(cfg, adapter),
        f"# {cfg.experiment_name}\n",
        _intro(cfg, adapter),
        _data_section(cfg),
        _training_section(cfg, exp),
        _validation_section(cfg, exp),
        _prompt_section(cfg, eos),
        _usage_section(cfg, name, adapter),
        _files_section(cfg, adapter),
        _license_section(cfg),
    ]
    return "\n".join(p for p in parts if p).rstrip() + "\n"


# --- pieces ---


def _front_matter(cfg: BaseConfig, adapter: bool) -> str:
    meta: dict[str, Any] = {
        "library_name": "peft" if adapter else "transformers",
        "license": "other",  # a placeholder: the owner picks the license before sharing
        "tags": ["llm-studio", cfg.problem_type] + (["lora"] if cfg.training.lora else []),
    }
    if looks_like_hub_id(cfg.llm_backbone):
        meta["base_model"] = cfg.llm_backbone
    pipeline = problem_type_of(cfg).pipeline_tag
    if pipeline and not adapter:
        meta["pipeline_tag"] = pipeline
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _intro(cfg: BaseConfig, adapter: bool) -> str:
    what = "A LoRA adapter" if adapter else "A model"
    text = (
        f"{what} fine-tuned with LLM Studio for **{problem_type_of(cfg).label}** "
        f"(`{cfg.problem_type}`), "
        f"starting from the backbone `{cfg.llm_backbone}`."
    )
    if adapter:
        text += " The adapter needs that backbone to run; the full merged model is exported apart."
    elif cfg.training.lora:
        text += " The LoRA weights are merged into the backbone: this folder is a complete model."
    return text + "\n"


def _data_section(cfg: BaseConfig) -> str:
    d: Any = cfg.dataset  # fields vary by problem type; its descriptor says which exist
    rows = [("Train data", _file_name(d.train_dataframe))]
    if d.validation_strategy == "custom":
        rows.append(("Validation data", _file_name(d.validation_dataframe)))
    else:
        rows.append(("Validation", f"{d.validation_size:g} of the train data held out"))
    if cfg.training.train_validation_data:
        rows.append(("Trained on validation data too", "yes"))
    if d.data_sample < 1.0:
        rows.append(("Data sample", f"{d.data_sample:g} of {', '.join(d.data_sample_choice)}"))
    rows.append(("System column", _code(d.system_column)))
    rows.append(("Prompt column(s)", ", ".join(_code(c) for c in d.prompt_column)))
    answer = d.answer_column
    answer = ", ".join(_code(c) for c in answer) if isinstance(answer, list) else _code(answer)
    rows.append(("Answer column(s)", answer))
    kind = problem_type_of(cfg)
    if kind.needs_pairs:
        rows.append(("Rejected answer column", _code(d.rejected_answer_column)))
        rows.append(("Rejected prompt column", _code(d.rejected_prompt_column)))
    if kind.chains:
        rows.append(("Parent id column", _code(d.parent_id_column)))
    if kind.has_head and not kind.predicts_values and d.num_classes:
        rows.append(("Number of classes", str(d.num_classes)))
    if kind.generates_text and not kind.encoder_decoder:  # a decoder never sees the prompt
        rows.append(("Loss on prompts", "no" if d.mask_prompt_labels else "yes"))
    return "## Training data\n\n" + _bullets(rows)


def _training_section(cfg: BaseConfig, exp: ExperimentFolder) -> str:
    tr: Any = cfg.training  # fields vary by problem type; its descriptor says which exist
    rows = [
        ("Epochs", str(tr.epochs)),
        ("Batch size", f"{tr.batch_size} (gradient accumulation {tr.grad_accumulation})"),
        ("Optimizer", tr.optimizer),
        ("Learning rate", f"{tr.learning_rate:g}, {tr.schedule} schedule"),
        ("Warmup epochs", f"{tr.warmup_epochs:g}"),
        ("Weight decay", f"{tr.weight_decay:g}"),
        ("Gradient clip", f"{tr.gradient_clip:g}" if tr.gradient_clip else "off"),
        ("Loss function", tr.loss_function),
    ]
    if problem_type_of(cfg).needs_pairs:
        rows += [("DPO beta", f"{tr.beta:g}"), ("SimPO gamma", f"{tr.simpo_gamma:g}")]
    if tr.lora:
        kind = "DoRA" if tr.use_dora else "LoRA"
        targets = tr.lora_target_modules or "all linear layers"
        rows.append(
            (
                "Adapters",
                f"{kind}: r {tr.lora_r}, alpha {tr.lora_alpha}, dropout {tr.lora_dropout:g}, "
                f"on {targets}",
            )
        )
    else:
        rows.append(("Adapters", "none (all weights trained)"))
    rows += [
        ("Backbone weights in training", _weights(cfg, exp)),
        ("Max length (tokens)", str(cfg.tokenizer.max_length)),
        ("Checkpoint kept", tr.save_checkpoint),
        ("Seed", str(cfg.environment.seed)),
    ]
    neftune = cfg.augmentation.neftune_noise_alpha
    if neftune:
        rows.append(("NEFTune noise alpha", f"{neftune:g}"))
    return (
        "## Training settings\n\n"
        + _bullets(rows)
        + "\nEvery setting is in `cfg.yaml`, next to this card; LLM Studio can load it to train "
        "again.\n"
    )


def _weights(cfg: BaseConfig, exp: ExperimentFolder) -> str:
    """What training measured on the loaded model (weights.json), not what the setting asked."""
    try:
        report = WeightsReport.from_dict(json.loads(exp.weights_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return f"{cfg.architecture.backbone_dtype} asked for; what was loaded is not recorded"
    return report.summary()


def _validation_section(cfg: BaseConfig, exp: ExperimentFolder) -> str:
    points, _ = exp.read_charts()
    metric = cfg.prediction.metric
    lines = []
    for name in (f"validation/{metric}", "validation/loss"):
        series = [p for p in points if p.name == name]
        if series:
            last = series[-1]
            shown = metric if name.endswith(metric) else "loss"
            lines.append(
                (
                    f"Validation {shown}",
                    f"{last.value:.4g} (last validation, step {last.step}, epoch {last.epoch:.2f})",
                )
            )
    if not lines:
        return "## Validation\n\nNo validation result was recorded.\n"
    note = ""
    if cfg.training.save_checkpoint == "best":
        note = "\nThe saved weights are those of the validation with the best metric.\n"
    return "## Validation\n\n" + _bullets(lines) + note


def _prompt_section(cfg: BaseConfig, eos: str) -> str:
    d: Any = cfg.dataset  # fields vary by problem type; its descriptor says which exist
    writes_answer = problem_type_of(cfg).generates_text  # a head's prompt ends at the separator
    fmt = PromptFormat.from_config(d, eos, answers=writes_answer)
    rows = [
        ("System start", _code(d.text_system_start or "")),
        ("Prompt start", _code(d.text_prompt_start or "")),
        ("Answer separator", _code(d.text_answer_separator or "")),
        ("End-of-sequence token", _code(eos)),
    ]
    flags = [("system", d.add_eos_token_to_system), ("prompt", d.add_eos_token_to_prompt)]
    if writes_answer:
        flags.append(("answer", d.add_eos_token_to_answer))
    rows.append(
        (
            "EOS token after " + " / ".join(t for t, _ in flags),
            " / ".join(_yes(v) for _, v in flags),
        )
    )
    example = fmt.render(Conversation(None, (EXAMPLE_QUESTION,), ("",)), with_last_answer=False)
    return (
        "## Prompt format\n\n"
        "The model expects its prompts exactly as in training. The tokenizer's chat template "
        "(`chat_template.jinja`) writes them, so `tokenizer.apply_chat_template(messages, "
        "add_generation_prompt=True)` gives the right text.\n\n"
        + _bullets(rows)
        + f"\nThe question {EXAMPLE_QUESTION!r}, ready for the answer:\n\n"
        + _fence(example, "text")
    )


def _generate_arguments(p: PredictionSection) -> tuple[list[str], list[str]]:
    """`generate`'s arguments as the chat passes them, and the stop texts."""
    gen = [
        f"max_new_tokens={p.max_length_inference}",
        f"min_new_tokens={min(p.min_length_inference, p.max_length_inference)}",
        f"do_sample={p.do_sample}",
        f"num_beams={p.num_beams}",
        f"repetition_penalty={p.repetition_penalty:g}",
    ]
    if p.do_sample:
        gen += [
            f"temperature={max(p.temperature, 1e-3):g}",
            f"top_k={p.top_k}",
            f"top_p={p.top_p:g}",
        ]
    from llm_studio.models.generation import stop_strings  # torch: only when a card is written

    stops = stop_strings(p)
    if stops:  # generation stops after one of them; the answer ends before it, as in the chat
        gen += [f"stop_strings={stops!r}", "tokenizer=tokenizer"]
    return gen, stops


def _usage_section(cfg: BaseConfig, name: str, adapter: bool) -> str:
    kind = problem_type_of(cfg)
    if kind.has_head:
        return _usage_labels(cfg, name, adapter)
    model_class = kind.auto_model
    p = cfg.prediction
    assert isinstance(p, PredictionSection)  # every type but the label ones (returned above)
    gen, stops = _generate_arguments(p)
    if adapter:
        grow = cfg.tokenizer.add_prompt_answer_tokens
        load = (
            ("import torch\n" if grow else "")
            + "from peft import PeftModel\n"
            + f"from transformers import {model_class}, AutoTokenizer\n\n"
            + f"adapter = {_py(name)}  # the unzipped adapter folder or its Hub repo\n"
            + f"backbone = {_py(cfg.llm_backbone)}\n\n"
            + "tokenizer = AutoTokenizer.from_pretrained(adapter)  # carries the chat template\n"
            + f"model = {model_class}.from_pretrained(backbone)\n"
            + (_GROW if grow else "")
            + "model = PeftModel.from_pretrained(model, adapter).eval()\n"
        )
    else:
        load = (
            f"from transformers import {model_class}, AutoTokenizer\n\n"
            f"model_name = {_py(name)}  # the unzipped folder or the Hub repo\n\n"
            "tokenizer = AutoTokenizer.from_pretrained(model_name)\n"
            f"model = {model_class}.from_pretrained(model_name).eval()\n"
            '# model.to("cuda")  # on a GPU\n'
        )
    # A decoder's output holds only the answer; a causal LM's continues the prompt.
    start = "0" if kind.encoder_decoder else 'inputs["input_ids"].shape[1]'
    code = (
        load + "\n"
        f'messages = [{{"role": "user", "content": "{EXAMPLE_QUESTION}"}}]\n'
        "# The chat template writes the prompt as in training and ends it where the answer starts.\n"
        "inputs = tokenizer.apply_chat_template(\n"
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True\n'
        ").to(model.device)\n"
        "output = model.generate(**inputs, " + ", ".join(gen) + ")\n"
        f"answer = tokenizer.decode(output[0, {start}:], skip_special_tokens=True)\n"
        + (f"for stop in {stops!r}:\n    answer = answer.split(stop)[0]\n" if stops else "")
        + "print(answer.strip())\n"
    )
    return "## Usage\n\n" + _fence(code, "python")


# Training added the prompt markers as tokens, their embedding rows set to the mean of the others.
_GROW = (
    "# Training added the prompt markers to the vocabulary: grow the embeddings the same way.\n"
    "old = model.get_input_embeddings().weight.shape[0]\n"
    "if len(tokenizer) > old:\n"
    "    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)\n"
    "    with torch.no_grad():\n"
    "        for layer in (model.get_input_embeddings(), model.get_output_embeddings()):\n"
    "            layer.weight[old:] = layer.weight[:old].mean(0)\n"
)


def _usage_labels(cfg: BaseConfig, name: str, adapter: bool) -> str:
    if adapter:
        return (
            "## Usage\n\n"
            "Load the backbone with `AutoModel`, apply the adapter with "
            "`peft.PeftModel.from_pretrained`, then apply the head in "
            "`classification_head.safetensors` to the hidden state of the prompt's last token, as "
            "the full model's card shows.\n"
        )
    code = (
        "import json\n"
        "from pathlib import Path\n\n"
        "import torch\n"
        "from safetensors.torch import load_file\n"
        "from transformers import AutoModel, AutoTokenizer\n\n"
        f"folder = Path({_py(name)})  # the unzipped folder\n"
        "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
        "body = AutoModel.from_pretrained(folder).eval()  # the backbone without its LM head\n"
        'head = load_file(folder / "classification_head.safetensors")\n'
        'info = json.loads((folder / "classification_head.json").read_text())\n\n'
        f'messages = [{{"role": "user", "content": "{EXAMPLE_QUESTION}"}}]\n'
        "inputs = tokenizer.apply_chat_template(\n"
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True\n'
        ")\n"
        "with torch.no_grad():\n"
        "    hidden = body(**inputs).last_hidden_state[:, -1].float()  # the last token\n"
        'outputs = hidden @ head["weight"].T + head["bias"]\n'
        'if info["activation"] == "softmax":\n'
        "    outputs = outputs.softmax(dim=-1)  # one probability per class\n"
        'elif info["activation"] == "sigmoid":\n'
        "    outputs = outputs.sigmoid()  # per label; binary: the probability of class 1\n"
        "print(outputs)\n"
    )
    return (
        "## Usage\n\n"
        "The head on top of the backbone is stored apart; `classification_head.json` says which "
        "activation turns its outputs into probabilities (`softmax`, `sigmoid`) or values "
        "(`none`).\n\n" + _fence(code, "python")
    )


def _files_section(cfg: BaseConfig, adapter: bool) -> str:
    if adapter:
        rows = [
            ("`adapter_config.json`, `adapter_model.safetensors`", "the adapter in PEFT format"),
            ("tokenizer files, `chat_template.jinja`", "the tokenizer as trained"),
        ]
    else:
        merged = ", LoRA merged in" if cfg.training.lora else ""
        rows = [
            ("`config.json`, `model.safetensors`", f"the model{merged}"),
            ("`generation_config.json`", "default generation settings"),
            ("tokenizer files, `chat_template.jinja`", "the tokenizer with the prompt format"),
        ]
    if problem_type_of(cfg).has_head:
        rows.append(
            (
                "`classification_head.safetensors`, `classification_head.json`",
                "the head on the last token's hidden state, and how to read its outputs",
            )
        )
    rows.append(("`cfg.yaml`", "the experiment's full configuration"))
    return "## Files\n\n" + _bullets(rows)


def _license_section(cfg: BaseConfig) -> str:
    return (
        "## License\n\n"
        "No license has been chosen yet (`license: other` above is a placeholder). Pick one "
        f"that the license of the backbone `{cfg.llm_backbone}` and the terms of the training "
        "data allow, and state it here and in the metadata before sharing the model.\n"
    )


# --- helpers ---


def _eos_token(path: Path) -> str | None:
    try:
        data = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    eos = data.get("eos_token")
    if isinstance(eos, dict):  # older tokenizers store an AddedToken mapping
        eos = eos.get("content")
    return eos if isinstance(eos, str) else None


def _file_name(path: str | None) -> str:
    if not path or path == "None":
        return "none"
    return _code(Path(path).name)


def _code(value: Any) -> str:
    if value is None or value == "None":
        return "none"
    text = str(value).replace("`", "'")
    return f"`{text}`" if text else "(empty)"


def _py(text: str) -> str:
    """A Python string literal for `text` (double-quoted, as the examples are written)."""
    return json.dumps(text, ensure_ascii=False)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _bullets(rows: list[tuple[str, str]]) -> str:
    return "".join(f"- **{title}**: {value}\n" for title, value in rows)


def _fence(text: str, lang: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}\n"
