"""Benchmark: train.py's training loop against a plain `transformers.Trainer` on the same work.

Both sides train the same model on the same training rows, tokenized the same way (prompt
labels masked), with the same hyperparameters: the default config with batch size 4, LoRA r 4
on every linear layer, 1 epoch, fp32 on the CPU. The Trainer script is written the way a
practitioner would: each batch padded to its longest row, no evaluation during training.

Prints, per run, loss-bearing (labelled, predicted) tokens per second of both sides and their
ratio, each side's validation loss on the same held-out rows, and train.py's validation time.
The two sides run back to back in this one process. `--repeats N` runs N seeds (the order of
the sides alternates) and prints the median ratio and each side's mean validation loss.

    .venv/bin/python bench/bench_hf_trainer.py --repeats 3                       # 18.6M Llama
    .venv/bin/python bench/bench_hf_trainer.py --model smollm2 --rows 200 --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from llm_studio.config.problem_types import PROBLEM_TYPES  # noqa: E402
from llm_studio.config.yaml_io import from_dict, to_dict  # noqa: E402
from llm_studio.data.tokenization import IGNORE_INDEX  # noqa: E402
from llm_studio.paths import backbone_search_path  # noqa: E402

DEFAULT_BACKBONE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"

WORDS = [
    "time",
    "year",
    "people",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "government",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "community",
    "name",
    "president",
    "team",
    "minute",
    "idea",
]


def length_spread_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """Instruction/answer rows whose word counts follow a log-normal spread, like chat data."""
    rng = np.random.default_rng(seed)

    def text(median: float) -> str:
        count = int(np.clip(rng.lognormal(np.log(median), 0.8), 2, 300))
        return " ".join(rng.choice(WORDS, size=count))

    return pd.DataFrame(
        {"id": [f"r{i}" for i in range(n)], "instruction": [text(25) for _ in range(n)]}
        | {"output": [text(30) for _ in range(n)]}
    )


def small_llama(dest: Path, tokenizer_source: Path) -> Path:
    """The issue's 18.6M-parameter Llama: hidden 256, 6 layers, the SmolLM2 tokenizer, tied
    embeddings, random weights."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def bench_config(model_dir: Path, csv: Path, output: Path, **training):
    """The causal LM defaults a user gets, with the issue's batch size, on the CPU in fp32."""
    data = to_dict(PROBLEM_TYPES["text_causal_language_modeling"]())
    data["llm_backbone"] = str(model_dir)
    data["output_directory"] = str(output)
    data["dataset"]["train_dataframe"] = str(csv)
    data["architecture"]["backbone_dtype"] = "float32"
    data["environment"].update({"gpus": [], "seed": 1})
    data["training"].update({"batch_size": 4, **training})
    cfg, _ = from_dict(data)
    return cfg


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def run_studio(cfg) -> dict:
    """train.py's loop in this process: loss-bearing tokens/s (its own figure, without
    validation), validation time and final validation loss."""
    from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
    from llm_studio.training.loop import run_experiment

    shutil.rmtree(cfg.output_directory, ignore_errors=True)
    Path(cfg.output_directory).mkdir(parents=True)
    capture = _Capture()
    logging.getLogger("llm_studio").addHandler(capture)
    logging.getLogger("llm_studio").setLevel(logging.INFO)
    try:
        run_experiment(cfg, ExperimentStatus(state="running"))
    finally:
        logging.getLogger("llm_studio").removeHandler(capture)
    folder = ExperimentFolder(cfg.output_directory)
    points, _ = folder.read_charts()
    last = {p.name: p.value for p in points}
    return {
        "tokens_per_s": last["train/tokens_per_s"],
        "validation_s": sum(p.value for p in points if p.name == "validation/seconds"),
        "validation_loss": last.get("validation/loss", float("nan")),
        "train_loss": float(np.mean([p.value for p in points if p.name == "train/loss"])),
        "saved_model_validation_loss": _saved_model_validation_loss(cfg, folder.checkpoint_dir),
    }


def _saved_model_validation_loss(cfg, checkpoint: Path) -> float:
    """The saved model's validation loss, computed by the code that scores the Trainer's."""
    from transformers import AutoModelForCausalLM

    from llm_studio.data.splitting import split_and_sample
    from llm_studio.training.tasks import build_task

    task = build_task(cfg, torch.device("cpu"))
    data = split_and_sample(cfg, cfg.environment.seed, task)
    task._set_tokenizer(_tokenizer(cfg))
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    return _validation_loss(model, task, data.validation)


def run_trainer(cfg) -> dict:
    """A plain transformers.Trainer on the very rows train.py trains on, tokenized alike."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from llm_studio.data.splitting import split_and_sample
    from llm_studio.training.tasks import build_task

    task = build_task(cfg, torch.device("cpu"))
    data = split_and_sample(cfg, cfg.environment.seed, task)
    task._set_tokenizer(_tokenizer(cfg))
    train = [task.encode(c) for c in data.train]
    rows = [{"input_ids": s.input_ids, "labels": s.labels} for s in train]
    pad_id = task.tokenizer.pad_token_id

    def collate(samples):  # per-batch padding to the longest row
        length = max(len(s["input_ids"]) for s in samples)
        ids = torch.full((len(samples), length), pad_id)
        labels = torch.full((len(samples), length), IGNORE_INDEX)
        mask = torch.zeros((len(samples), length), dtype=torch.long)
        for row, s in enumerate(samples):
            ids[row, : len(s["input_ids"])] = torch.tensor(s["input_ids"])
            labels[row, : len(s["labels"])] = torch.tensor(s["labels"])
            mask[row, : len(s["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    torch.manual_seed(cfg.environment.seed)
    model = AutoModelForCausalLM.from_pretrained(cfg.llm_backbone, dtype=torch.float32)
    tr = cfg.training
    model = get_peft_model(
        model,
        LoraConfig(
            r=tr.lora_r,
            lora_alpha=tr.lora_alpha,
            lora_dropout=tr.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=tr.batch_size,
            num_train_epochs=tr.epochs,
            learning_rate=tr.learning_rate,
            lr_scheduler_type=tr.schedule.lower(),
            weight_decay=tr.weight_decay,
            max_grad_norm=tr.gradient_clip,  # 0: no clipping, as train.py (the Trainer clips at 1)
            dataloader_drop_last=tr.drop_last_batch,  # the same samples and steps as train.py
            gradient_checkpointing=cfg.architecture.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
            eval_strategy="no",
            save_strategy="no",
            logging_steps=10,
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            seed=cfg.environment.seed,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
        start = time.perf_counter()
        outcome = trainer.train()
        seconds = time.perf_counter() - start
    labelled = sum(sum(1 for x in s.labels[1:] if x != IGNORE_INDEX) for s in train)
    return {
        "tokens_per_s": labelled / seconds,
        "validation_loss": _validation_loss(model, task, data.validation),
        "train_loss": outcome.training_loss,
    }


def _tokenizer(cfg):
    from llm_studio.models.backbone import load_tokenizer

    return load_tokenizer(cfg)


@torch.no_grad()
def _validation_loss(model, task, conversations) -> float:
    """The mean per-sample loss on the validation rows, as train.py's validation/loss."""
    from llm_studio.data.tokenization import collate_training
    from llm_studio.training.losses import per_sample_loss

    model.eval()
    losses = []
    for conv in conversations:
        batch = collate_training([task.encode(conv)], task.tokenizer.pad_token_id, 1.0, 10**6)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        losses += per_sample_loss(logits, batch["labels"]).tolist()
    return float(np.mean(losses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="a backbone folder, or 'smollm2' for the prepared default backbone"
    )
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--set", nargs="*", default=[], help="train.py overrides, e.g. training.sample_packing=True"
    )
    parser.add_argument(
        "--only", choices=("studio", "trainer"), help="run one side (to compare settings)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        smollm2 = next(
            folder / DEFAULT_BACKBONE_NAME
            for folder in backbone_search_path()
            if (folder / DEFAULT_BACKBONE_NAME).is_dir()
        )
        if args.model == "smollm2":
            model_dir = smollm2
        elif args.model:
            model_dir = Path(args.model)
        else:
            model_dir = small_llama(tmp / "llama", smollm2)
        csv = tmp / "data.csv"
        length_spread_rows(args.rows).to_csv(csv, index=False)
        cfg = bench_config(model_dir, csv, tmp / "out")
        for override in args.set:
            key, _, value = override.partition("=")
            section, _, name = key.partition(".")
            current = getattr(getattr(cfg, section), name)
            typed = value == "True" if isinstance(current, bool) else type(current)(value)
            setattr(getattr(cfg, section), name, typed)
        print(f"model {model_dir.name}, {args.rows} rows, batch 4, LoRA r 4, fp32, CPU")
        seed = cfg.environment.seed
        ratios, losses = [], []
        for repeat in range(args.repeats):
            # Each repeat draws another seed: the batch order and dropout masks move the final
            # loss more than anything else, so one seed says little about it.
            cfg.environment.seed = seed + repeat
            sides = [("studio", run_studio), ("trainer", run_trainer)]
            if args.only:
                name, fn = next(side for side in sides if side[0] == args.only)
                print(
                    f"run {repeat + 1} (seed {cfg.environment.seed}): {name} {fn(cfg)}", flush=True
                )
                continue
            results = {name: fn(cfg) for name, fn in (sides if repeat % 2 == 0 else sides[::-1])}
            ours, theirs = results["studio"], results["trainer"]
            ratios.append(ours["tokens_per_s"] / theirs["tokens_per_s"])
            losses.append((ours["validation_loss"], theirs["validation_loss"]))
            print(
                f"run {repeat + 1} (seed {cfg.environment.seed}): "
                f"train.py {ours['tokens_per_s']:,.0f} tokens/s, "
                f"Trainer {theirs['tokens_per_s']:,.0f} tokens/s, ratio {ratios[-1]:.2f}x; "
                f"validation loss {ours['validation_loss']:.4f} vs "
                f"{theirs['validation_loss']:.4f}; train.py validation {ours['validation_s']:.1f} s",
                flush=True,
            )
        if len(ratios) > 1:
            mean_ours, mean_theirs = np.mean(losses, axis=0)
            print(
                f"median ratio {np.median(ratios):.2f}x over {len(ratios)} runs; mean validation "
                f"loss {mean_ours:.4f} (train.py) vs {mean_theirs:.4f} (Trainer)"
            )


if __name__ == "__main__":
    main()
