"""GPU throughput check: tokens/s of training steps for the precisions and attention kernels.

Runs the real loading and adapter code (`load_backbone`, `prepare_for_training`) on a random
Llama built here (no download): fp32 vs bf16, LoRA on an int4 (nf4) backbone, and SDPA vs
Flash Attention 2 when flash-attn is installed. Each line prints tokens/s and the ratio to the
first (fp32) line, measured in this same process. Then train.py's own loop with the default
config (the default backbone when prepared, on length-spread chat-like data): its
train/tokens_per_s (loss-bearing tokens) and train/mfu charts, with padded length-grouped
batches and with sample_packing. `--smoke` runs tiny sizes on the CPU, to check the script
itself where no GPU is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from conftest import load_cfg, pattern_rows, tiny_config  # noqa: E402
from tiny_model import build_tiny_llama  # noqa: E402

from llm_studio.models.backbone import load_backbone, prepare_for_training  # noqa: E402

DEFAULT_BACKBONE = ROOT / ".models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct"


def fused_loss_check(tmp: Path, smoke: bool) -> None:
    """Liger's fused linear cross entropy against the plain loss on the kept logits: loss and
    LoRA gradients of the same batch, on the GPU (the fused path runs nowhere else)."""
    import importlib.util

    from llm_studio.data.tokenization import collate_training
    from llm_studio.training.tasks import build_task

    if smoke or importlib.util.find_spec("liger_kernel") is None:
        print("fused linear cross entropy: not checked (needs a GPU and liger-kernel)")
        return
    model_dir = build_tiny_llama(tmp / "fused_model", hidden_size=256, num_layers=2)
    csv = tmp / "fused.csv"
    pattern_rows(16).to_csv(csv, index=False)
    cfg = load_cfg(
        tiny_config(
            model_dir, csv, tmp / "fused_out", environment={"gpus": ["0"], "seed": 0},
            training={"lora_dropout": 0.0},
        )
    )  # fmt: skip
    task = build_task(cfg, torch.device("cuda"))
    model = task.load().model
    fused = task.fused_loss
    print(f"fused linear cross entropy: {'on' if fused is not None else 'OFF'} with liger")
    samples = [
        task.training_dataset(task.build_items(pattern_rows(8), "train"), 0)[i] for i in range(8)
    ]
    batch = {
        k: v.cuda()
        for k, v in collate_training(samples, task.tokenizer.pad_token_id, 1.0, 64).items()
    }
    results = []
    for path in (fused, None):
        task.fused_loss = path
        model.zero_grad(set_to_none=True)
        loss, _ = task.loss(model, batch)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((loss.item(), grads))
    (a, ga), (b, gb) = results
    worst = max((x - y).abs().max().item() for x, y in zip(ga, gb, strict=True))
    print(f"  loss fused {a:.6f} vs plain {b:.6f}; largest gradient difference {worst:.2e}")


def default_config_throughput(tmp: Path, smoke: bool) -> None:
    """train.py's loop, default config (bf16 autocast on the GPU), packed and padded."""
    from bench_hf_trainer import bench_config, length_spread_rows

    from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
    from llm_studio.training.loop import run_experiment

    model_dir = DEFAULT_BACKBONE
    if smoke or not (model_dir / "config.json").is_file():
        model_dir = build_tiny_llama(tmp / "loop_model", hidden_size=64, num_layers=2)
    csv = tmp / "spread.csv"
    length_spread_rows(24 if smoke else 2000).to_csv(csv, index=False)
    for packing in (False, True):
        out = tmp / f"loop_{packing}"
        cfg = bench_config(model_dir, csv, out, sample_packing=packing)
        cfg.architecture.backbone_dtype = "float32" if smoke else "bfloat16"
        cfg.environment.gpus = [] if smoke else ["0"]
        cfg.prediction.metric = "Perplexity"
        cfg.training.batch_size = 4 if smoke else 16
        out.mkdir(parents=True)
        started = time.perf_counter()
        run_experiment(cfg, ExperimentStatus(state="running"))
        points, _ = ExperimentFolder(out).read_charts()
        last = {p.name: p.value for p in points}
        mfu = last.get("train/mfu")
        print(
            f"train.py default config, {model_dir.name}, batch {cfg.training.batch_size}, "
            f"sample_packing {packing}: {last['train/tokens_per_s']:,.0f} loss-bearing tokens/s, "
            f"MFU {'n/a' if mfu is None else f'{mfu:.1%}'}, run {time.perf_counter() - started:.0f} s",
            flush=True,
        )


def tokens_per_second(cfg, device, batch: int, length: int, steps: int) -> float:
    backbone = load_backbone(cfg, device)
    model = prepare_for_training(backbone.model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    ids = torch.randint(4, 500, (batch, length), device=device)
    autocast = device.type == "cuda" and cfg.architecture.backbone_dtype != "float32"
    for step in range(steps + 2):  # two warm-up steps
        if step == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * length * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke else "cuda")
    hidden, layers, batch, length, steps = (
        (64, 2, 2, 32, 2) if args.smoke else (1024, 12, 8, 1024, 10)
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_llama(tmp / "model", hidden_size=hidden, num_layers=layers)
        csv = tmp / "data.csv"
        pattern_rows(20).to_csv(csv, index=False)
        runs = [
            ("fp32, full", {"backbone_dtype": "float32"}, {"lora": False}, "sdpa"),
            ("bf16, full", {"backbone_dtype": "bfloat16"}, {"lora": False}, "sdpa"),
            ("bf16, LoRA", {"backbone_dtype": "bfloat16"}, {"lora": True}, "sdpa"),
            ("int4 nf4, LoRA", {"backbone_dtype": "int4"}, {"lora": True}, "sdpa"),
        ]
        if not args.smoke:
            runs.append(
                ("bf16, LoRA, flash", {"backbone_dtype": "bfloat16"}, {"lora": True},
                 "flash_attention_2")
            )  # fmt: skip
        baseline = None
        for name, architecture, training, attention in runs:
            cfg = load_cfg(
                tiny_config(
                    model_dir,
                    csv,
                    tmp / "out",
                    architecture={**architecture, "gradient_checkpointing": False},
                    training={**training, "attention_implementation": attention},
                    environment={"gpus": [] if args.smoke else ["0"], "seed": 0},
                )
            )
            try:
                speed = tokens_per_second(cfg, device, batch, length, steps)
            except Exception as exc:  # one unsupported line must not hide the others
                print(f"{name:22s} failed: {type(exc).__name__}: {exc}".splitlines()[0])
                continue
            baseline = baseline or speed
            print(f"{name:22s} {speed:12,.0f} tokens/s  {speed / baseline:5.2f}x fp32", flush=True)
        fused_loss_check(tmp, args.smoke)
        default_config_throughput(tmp, args.smoke)


if __name__ == "__main__":
    main()
