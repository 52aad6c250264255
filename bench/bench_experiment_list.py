"""Benchmark: rendering the View experiments table with 500 experiment folders.

Each refresh of the list (every ~2 s) re-renders all rows. Compared in the same process:
re-reading every folder from scratch (baseline) against the incremental summary cache the page
uses (status only when changed, charts from the last byte offset). Prints both and the ratio.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EXPERIMENTS = 500
POINTS = 2000  # chart lines per experiment


def populate(workdir: Path) -> None:
    from llm_studio.config.problem_types import CausalLMConfig
    from llm_studio.config.yaml_io import save_config
    from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
    from llm_studio.store import DatasetRecord, ExperimentRecord, Store

    store = Store()
    dataset = store.add_dataset(
        DatasetRecord(name="bench", path=str(workdir), config_file="", problem_type=
                      "text_causal_language_modeling", train_dataframe="train.csv")
    )  # fmt: skip
    cfg = CausalLMConfig()
    for i in range(EXPERIMENTS):
        folder = ExperimentFolder(workdir / "output" / "user" / f"exp-{i:03d}")
        folder.path.mkdir(parents=True)
        save_config(cfg, folder.cfg_yaml)
        folder.write_status(
            ExperimentStatus(state="finished", step=POINTS, total_steps=POINTS, progress=1.0)
        )
        lines = [
            json.dumps({"name": "validation/BLEU" if s % 100 == 0 else "train/loss", "step": s,
                        "value": 1.0 / (s + 1), "epoch": s / POINTS})
            for s in range(POINTS)
        ]  # fmt: skip
        folder.charts_file.write_text("\n".join(lines) + "\n")
        store.add_experiment(
            ExperimentRecord(name=folder.path.name, dataset_id=dataset.id, path=str(folder.path),
                             problem_type=cfg.problem_type, config_file=str(folder.cfg_yaml))
        )  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["H2O_LLM_STUDIO_WORKDIR"] = tmp
        populate(Path(tmp))
        from llm_studio.experiments import summary
        from llm_studio.store import Store
        from llm_studio.ui.pages import experiments

        store = Store()

        def render() -> float:
            start = time.perf_counter()
            rows = experiments.experiment_rows(store)
            assert len(rows) == EXPERIMENTS
            return time.perf_counter() - start

        experiments.experiment_rows(store)  # warm the config/metric cache and the runner
        baseline = []
        for _ in range(3):
            experiments.SUMMARIES = summary.SummaryCache()  # forget everything: read all again
            baseline.append(render())
        cached = [render() for _ in range(3)]
        slow, fast = min(baseline), min(cached)
        print(f"{EXPERIMENTS} experiments, {POINTS} chart points each")
        print(f"re-reading every folder: {slow * 1000:.0f} ms per render")
        print(f"incremental cache:       {fast * 1000:.0f} ms per render")
        print(f"speed-up: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
