"""Grid search in a real browser: Create experiment with "Grid search" on, two learning rates and
two LoRA ranks, Run: four experiments with distinct names, each config holding its combination,
queued and run one at a time on the CPU to "finished"."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml
from conftest import pattern_rows, tiny_config
from gui_harness import (
    browser_page,
    cell,
    row,
    running_app,
    screenshot,
    wait_for_app_port,
    wait_for_text,
)
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

if shutil.which("chromium") is None:  # `make test` installs it; say so instead of skipping
    pytest.fail("Debian chromium is missing: run `make browser`", pytrace=False)

LEARNING_RATES = (0.01, 0.001)
LORA_RS = (2, 4)
NAMES = {f"grid_learning_rate-{lr}_lora_r-{r}": (lr, r) for lr in LEARNING_RATES for r in LORA_RS}


def register_dataset(workdir: Path, tiny_model_dir: Path) -> None:
    """A small dataset whose settings are already tiny and runnable on the CPU."""
    from llm_studio.store import DatasetRecord, Store

    workdir.mkdir(parents=True)
    csv = workdir / "pattern.csv"
    pattern_rows(24).to_csv(csv, index=False)
    settings = tiny_config(
        tiny_model_dir, csv, workdir / "unused", prediction={"max_length_inference": 4}
    )
    (workdir / "dataset.yaml").write_text(yaml.safe_dump(settings))
    Store(workdir / "data" / "dbs" / "llmstudio.db").add_dataset(
        DatasetRecord(
            name="grid-data",
            path=str(workdir),
            config_file=str(workdir / "dataset.yaml"),
            problem_type="text_causal_language_modeling",
            train_dataframe=str(csv),
        )
    )


def test_grid_search_runs_one_experiment_per_combination(tmp_path, tiny_model_dir):
    workdir = tmp_path / "gui-grid"
    user = workdir / "output" / "user"
    register_dataset(workdir, tiny_model_dir)
    with running_app(workdir) as url, browser_page() as page:
        wait_for_app_port(workdir)
        page.goto(url + "#experiment/start")
        wait_for_text(page, "Run experiment", 60)
        # The dataset registered first is the form's first choice.
        expect(page.get_by_role("combobox", name="Dataset")).to_have_text("grid-data")
        page.get_by_label("Experiment name").fill("grid")
        page.get_by_label("LLM backbone").fill(str(tiny_model_dir))
        off = page.get_by_label("Learning rate: grid values", exact=True)
        assert off.count() == 0  # grid search off: the plain form

        # Grid search on: a values widget under each setting a grid can vary, typed text kept.
        page.get_by_role("switch", name="Grid search").click()
        page.get_by_label("Learning rate: grid values", exact=True).wait_for(timeout=30_000)
        assert page.get_by_label("Experiment name").input_value() == "grid"
        assert page.get_by_label("LLM backbone").input_value() == str(tiny_model_dir)
        assert page.locator("[data-test=grid__training__optimizer]").count() == 1  # multi-select
        assert page.get_by_label("Lora alpha: grid values", exact=True).count() == 1
        assert page.get_by_label("Train dataframe: grid values", exact=True).count() == 0  # a path
        page.get_by_label("Learning rate: grid values", exact=True).fill(
            ", ".join(map(str, LEARNING_RATES))
        )
        page.get_by_label("Lora r: grid values", exact=True).fill(", ".join(map(str, LORA_RS)))
        page.get_by_label("Epochs: grid values", exact=True).fill("1, lots")
        screenshot(page, "grid_form")

        # A bad value is refused with the key, the value and what is allowed; the texts stay.
        page.get_by_role("button", name="Run experiment").click()
        wait_for_text(page, "expected an integer", 30)  # Wave typesets the quotes
        assert "training.epochs: got" in page.locator("body").inner_text()
        screenshot(page, "grid_bad_value")
        assert page.get_by_label("Lora r: grid values", exact=True).input_value() == "2, 4"
        page.get_by_label("Epochs: grid values", exact=True).fill("")

        page.get_by_role("button", name="Run experiment").click()
        anyway = page.get_by_role("button", name="Run anyway")
        message = page.get_by_text("Started a grid search of 4 experiments.")
        deadline = time.time() + 60
        while not message.count():
            assert time.time() < deadline, page.locator("body").inner_text()
            if anyway.count():
                anyway.click()
            time.sleep(0.5)
        for name in NAMES:
            row(page, name).wait_for(timeout=30_000)
        screenshot(page, "grid_started")

        # Each config carries its combination; everything else is the form's.
        for name, (lr, r) in NAMES.items():
            cfg = yaml.safe_load((user / name / "cfg.yaml").read_text())
            assert cfg["experiment_name"] == name
            assert cfg["training"]["learning_rate"] == pytest.approx(lr)
            assert cfg["training"]["lora_r"] == r
            assert cfg["llm_backbone"] == str(tiny_model_dir)
            assert cfg["output_directory"] == str(user / name)

        # They queue and run one at a time, each to finished.
        seen: dict[str, list[str]] = {name: [] for name in NAMES}
        most_running = 0
        deadline = time.time() + 300
        while True:
            states = {name: cell(page, name, "status") for name in NAMES}
            for name, state in states.items():
                assert state != "failed", f"{name} failed: {seen}"
                if state and (not seen[name] or seen[name][-1] != state):
                    seen[name].append(state)
            most_running = max(most_running, list(states.values()).count("running"))
            if all(state == "finished" for state in states.values()):
                break
            assert time.time() < deadline, f"the grid did not finish: {seen}"
            time.sleep(0.5)
        print("grid on the list:", seen)
        screenshot(page, "grid_finished")
        assert most_running == 1, seen
        assert sum("queued" in states for states in seen.values()) >= 2, seen
    log = (workdir / "launcher.log").read_text(errors="replace")
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 2000) :][:6000]
