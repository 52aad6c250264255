"""Benchmark: training throughput with per-batch padding (padding_quantile 1.0) against padding
every batch to max_length (padding_quantile 0), in the same process on the tiny model.

Prints tokens/s of both and their ratio. Run with `make bench`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import load_cfg, pattern_rows, tiny_config  # noqa: E402
from tiny_model import build_tiny_llama  # noqa: E402

from llm_studio.training.tasks import build_task  # noqa: E402


def throughput(cfg, device, steps: int = 20) -> float:
    """Real (non-pad) tokens trained per second over `steps` batches."""
    from llm_studio.data.splitting import split_and_sample
    from llm_studio.training.loop import build_train_loader

    task = build_task(cfg, device)
    data = split_and_sample(cfg, cfg.environment.seed, task)
    model = task.load().model
    loader = build_train_loader(task.training_dataset(data.train, 0), cfg, task.collate)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batches = list(islice(loader, steps))
    task.loss(model, batches[0])[0].backward()  # warm-up
    tokens, start = 0, time.perf_counter()
    for batch in batches:
        loss, _ = task.loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
    return tokens / (time.perf_counter() - start)


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_llama(tmp / "tiny", hidden_size=128, num_layers=2)
        csv = tmp / "data.csv"
        pattern_rows(400).to_csv(csv, index=False)
        results = {}
        for quantile in (0.0, 1.0):
            cfg = load_cfg(
                tiny_config(
                    model_dir,
                    csv,
                    tmp / "out",
                    tokenizer={"max_length": 256, "padding_quantile": quantile},
                    training={"batch_size": 8, "lora": False},
                )
            )
            results[quantile] = throughput(cfg, torch.device("cpu"))
            print(f"padding_quantile {quantile}: {results[quantile]:,.0f} tokens/s")
        print(f"per-batch padding speed-up: {results[1.0] / results[0.0]:.2f}x")


if __name__ == "__main__":
    main()
