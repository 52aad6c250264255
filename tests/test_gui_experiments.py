"""The guide's model flow in a real browser (Debian chromium + playwright), on a real app:
create an experiment on the tiny Llama, watch it train live, read its tabs, stop a second one,
delete both, then delete the dataset they used."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml
from gui_harness import (
    browser_page,
    cell,
    percent,
    row,
    running_app,
    screenshot,
    wait_for_app_port,
    wait_for_text,
    wait_status,
)

pytestmark = pytest.mark.slow

if shutil.which("chromium") is None:  # `make test` installs it; say so instead of skipping
    pytest.fail("Debian chromium is missing: run `make browser`", pytrace=False)

TABS = {
    "Charts": "loss",
    "Summary": "LLM backbone",
    "Train data insights": "Sample 1",
    "Validation prediction insights": "Best",
    "Logs": "Validation at step",
    "Config": "llm_backbone",
}


def choose(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    time.sleep(0.5)


def set_switch(page, label: str, on: bool) -> None:
    switch = page.get_by_role("switch", name=label)
    if (switch.get_attribute("aria-checked") == "true") != on:
        switch.click()


def set_data_sample(page, value: float) -> None:
    """A slider from 0.01 in steps of 0.01: Home, then arrow keys."""
    slider = page.get_by_role("slider", name="Data sample")
    slider.focus()
    slider.press("Home")
    for _ in range(round((value - 0.01) / 0.01)):
        slider.press("ArrowRight")
    assert float(slider.get_attribute("aria-valuenow")) == pytest.approx(value)


def fill_form(page, url: str, name: str, backbone: Path, epochs: int, shots: str = "") -> None:
    page.goto(url + "#experiment/start")
    wait_for_text(page, "Run experiment", 60)
    choose(page, "Dataset", "demo-chat")
    page.get_by_label("Experiment name").fill(name)
    page.get_by_label("LLM backbone").fill(str(backbone))
    choose(page, "Backbone dtype", "float32")
    set_switch(page, "Gradient checkpointing", False)
    page.get_by_label("Number of workers").fill("0")
    page.get_by_label("Max length inference").fill("4")
    page.get_by_label("Epochs", exact=True).fill(str(epochs))
    set_data_sample(page, 0.4)
    if shots:
        screenshot(page, shots + "_form")
        # A dependent setting follows its control: LoRA off hides "Lora r", on brings it back,
        # and the re-render keeps what was typed so far.
        set_switch(page, "Lora", False)
        page.get_by_label("Lora r").wait_for(state="detached", timeout=30_000)
        assert page.get_by_label("LLM backbone").input_value() == str(backbone)
        screenshot(page, shots + "_lora_off")
        set_switch(page, "Lora", True)
        page.get_by_label("Lora r").wait_for(timeout=30_000)
        assert page.get_by_label("Epochs", exact=True).input_value() == str(epochs)
        assert page.get_by_label("Number of workers").input_value() == "0"
        screenshot(page, shots + "_lora_on")


def run(page, name: str) -> None:
    """Run experiment (confirming warnings with "Run anyway"); lands on View experiments."""
    page.get_by_role("button", name="Run experiment").click()
    anyway = page.get_by_role("button", name="Run anyway")
    deadline = time.time() + 60
    while time.time() < deadline:
        if anyway.count():
            anyway.click()
        elif row(page, name).count():
            return
        time.sleep(0.5)
    raise AssertionError(f"Run experiment did not list {name} on View experiments")


def select_rows(page, *names: str) -> None:
    for name in names:
        checkbox = row(page, name).get_by_role("checkbox")
        for _ in range(5):
            if checkbox.get_attribute("aria-checked") != "true":
                checkbox.click()
            time.sleep(0.5)
            if checkbox.get_attribute("aria-checked") == "true":
                break
        assert checkbox.get_attribute("aria-checked") == "true", f"could not select {name}"


def test_model_flow(tmp_path, tiny_model_dir):
    workdir = tmp_path / "gui-experiments"
    user = workdir / "output" / "user"
    with running_app(workdir) as url, browser_page() as page:
        wait_for_app_port(workdir)

        # Create experiment: the form, a dependent setting, and Run.
        fill_form(page, url, "gui-first", tiny_model_dir, epochs=1, shots="experiments")
        screenshot(page, "experiments_filled")
        run(page, "gui-first")
        cfg = yaml.safe_load((user / "gui-first" / "cfg.yaml").read_text())
        assert cfg["llm_backbone"] == str(tiny_model_dir)
        assert cfg["architecture"]["backbone_dtype"] == "float32"
        assert cfg["architecture"]["gradient_checkpointing"] is False
        assert cfg["training"]["lora"] is True
        assert cfg["environment"]["number_of_workers"] == 0
        assert cfg["prediction"]["max_length_inference"] == 4
        assert cfg["training"]["epochs"] == 1
        assert cfg["dataset"]["data_sample"] == pytest.approx(0.4)

        # View experiments refreshes itself: progress rises to 100 % and Status to finished.
        page.evaluate("window.__not_reloaded = true")
        seen = wait_status(page, "gui-first", ("finished",), timeout=120)
        print("gui-first on the list:", seen)
        screenshot(page, "experiments_finished")
        assert page.evaluate("window.__not_reloaded === true"), "the list reloaded the page"
        progress = [p for _, p in seen if p is not None]
        assert progress == sorted(progress), seen
        assert progress[-1] == 100, seen
        assert any(s == "running" for s, _ in seen), seen

        # The experiment's tabs.
        row(page, "gui-first").get_by_role("link", name="gui-first").click()
        for tab, text in TABS.items():
            page.get_by_role("tab", name=tab).click()
            wait_for_text(page, text, 30)
            screenshot(page, "experiments_tab_" + tab.split()[0].lower())
        page.get_by_role("tab", name="Charts").click()
        wait_for_text(page, "loss", 30)
        page.locator("canvas").first.wait_for(timeout=30_000)  # the plot is drawn

        # A long second experiment: its progress rises on the page (the tiny model's steps are
        # too quick to catch the first one mid-way), then it is stopped from the list.
        fill_form(page, url, "gui-long", tiny_model_dir, epochs=50)
        run(page, "gui-long")
        page.evaluate("window.__not_reloaded = true")
        rising: list[float] = []
        deadline = time.time() + 90
        while len(rising) < 2:
            assert time.time() < deadline, f"gui-long's progress did not rise: {rising}"
            assert cell(page, "gui-long", "status") in ("", "queued", "running"), rising
            value = percent(cell(page, "gui-long", "progress")) or 0
            if value > (rising[-1] if rising else 0):
                rising.append(value)
            time.sleep(0.5)
        print("gui-long's progress:", rising)
        assert rising[-1] < 100 and page.evaluate("window.__not_reloaded === true")
        assert cell(page, "gui-long", "eta"), "no ETA while running"
        screenshot(page, "experiments_second_running")
        select_rows(page, "gui-long")
        page.get_by_role("button", name="Stop experiments").click()
        wait_for_text(page, "Stopping 1 experiment", 30)
        seen = wait_status(page, "gui-long", ("stopped",), timeout=60)
        print("gui-long on the list:", seen)
        screenshot(page, "experiments_stopped")
        assert cell(page, "gui-first", "status") == "finished"

        # Delete both (with the confirmation dialog); their folders go with them.
        assert (user / "gui-first").is_dir() and (user / "gui-long").is_dir()
        select_rows(page, "gui-first", "gui-long")
        page.get_by_role("button", name="Delete experiments").click()
        dialog = page.get_by_role("dialog")
        question = dialog.get_by_text("and their folders?")  # naming both
        question.wait_for(timeout=30_000)
        assert "gui-first" in question.inner_text() and "gui-long" in question.inner_text()
        screenshot(page, "experiments_delete_dialog")
        dialog.get_by_role("button", name="Delete", exact=True).click()
        wait_for_text(page, "Deleted 2 experiment(s)", 60)
        row(page, "gui-first").wait_for(state="detached", timeout=30_000)
        assert row(page, "gui-long").count() == 0
        screenshot(page, "experiments_deleted")
        assert not (user / "gui-first").exists()
        assert not (user / "gui-long").exists()

        # No experiment uses demo-chat any more: View datasets lets it go.
        page.goto(url + "#datasets")
        page.get_by_text("demo-chat", exact=True).first.click()
        wait_for_text(page, "Edit dataset", 30)
        page.get_by_role("button", name="Delete dataset").click()
        page.get_by_role("button", name="Delete", exact=True).click()
        wait_for_text(page, "Deleted demo-chat", 30)
        screenshot(page, "experiments_dataset_deleted")
        assert not (workdir / "data" / "user" / "demo-chat").exists()
    log = (workdir / "launcher.log").read_text(errors="replace")
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 2000) :][:6000]
