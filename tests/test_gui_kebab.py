"""View experiments' per-row kebab menu in a real browser: New experiment (pre-filled from the
row's experiment), Stop, Rename and Delete (with the same confirmation as the bulk delete)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml
from conftest import pattern_rows, tiny_config
from gui_harness import (
    add_dataset,
    add_experiment,
    browser_page,
    menu,
    open_menu,
    row,
    running_app,
    screenshot,
    wait_for_app_port,
    wait_for_text,
    wait_status,
)
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

if shutil.which("chromium") is None:  # `make test` installs it; say so instead of skipping
    pytest.fail("Debian chromium is missing: run `make browser`", pytrace=False)

SOURCE = "kebab-source"


def register_source(workdir: Path, tiny_model_dir: Path) -> None:
    """A finished experiment with recognisable settings, and its dataset, in the app's store."""
    from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus

    workdir.mkdir(parents=True)
    csv = workdir / "pattern.csv"
    pattern_rows(48).to_csv(csv, index=False)
    dataset = add_dataset(workdir, "pattern", csv, "text_causal_language_modeling")
    out = workdir / "output" / "user" / SOURCE
    data = tiny_config(
        tiny_model_dir, csv, out, training={"epochs": 3}, prediction={"max_length_inference": 5}
    )
    data["experiment_name"] = SOURCE
    out.mkdir(parents=True)
    (out / "cfg.yaml").write_text(yaml.safe_dump(data))
    ExperimentFolder(out).write_status(ExperimentStatus(state="finished", progress=1.0))
    add_experiment(workdir, dataset, out, data["problem_type"])


def test_row_menu_new_stop_rename_delete(tmp_path, tiny_model_dir):
    workdir = tmp_path / "gui-kebab"
    user = workdir / "output" / "user"
    register_source(workdir, tiny_model_dir)
    copy = f"{SOURCE}-1"
    with running_app(workdir) as url, browser_page() as page:
        wait_for_app_port(workdir)
        page.goto(url + "#experiments")
        row(page, SOURCE).wait_for(timeout=30_000)

        # New experiment: the form comes pre-filled with this experiment's settings.
        open_menu(page, SOURCE)
        items = page.get_by_role("menuitem").all_inner_texts()
        assert items == ["New experiment", "Rename experiment", "Stop experiment",
                         "Delete experiment"], items  # fmt: skip
        screenshot(page, "kebab_menu")
        page.keyboard.press("Escape")
        menu(page, SOURCE, "New experiment")
        wait_for_text(page, f"Settings copied from {SOURCE}", 30)
        assert page.get_by_label("Experiment name").input_value() == copy
        assert page.get_by_label("LLM backbone").input_value() == str(tiny_model_dir)
        assert page.get_by_label("Epochs", exact=True).input_value() == "3"
        assert page.get_by_label("Max length inference").input_value() == "5"
        expect(page.get_by_role("combobox", name="Dataset")).to_have_text("pattern")
        screenshot(page, "kebab_new_experiment")

        # Run the copy for long, then stop it from its own row's menu.
        page.get_by_label("Epochs", exact=True).fill("100")
        page.get_by_role("button", name="Run experiment").click()
        anyway = page.get_by_role("button", name="Run anyway")
        deadline = time.time() + 60
        while not row(page, copy).count():
            assert time.time() < deadline, "Run experiment did not list the copy"
            if anyway.count():
                anyway.click()
            time.sleep(0.5)
        cfg = yaml.safe_load((user / copy / "cfg.yaml").read_text())
        assert cfg["prediction"]["max_length_inference"] == 5  # carried over from the source
        assert cfg["training"]["epochs"] == 100
        wait_status(page, copy, ("running",), timeout=120)
        menu(page, copy, "Stop experiment")
        wait_for_text(page, "Stopping 1 experiment", 30)
        wait_status(page, copy, ("stopped",), timeout=60)
        screenshot(page, "kebab_stopped")

        # Rename the source from its menu.
        menu(page, SOURCE, "Rename experiment")
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("New name").fill("kebab-renamed")
        dialog.get_by_role("button", name="Rename", exact=True).click()
        wait_for_text(page, "Renamed to kebab-renamed", 30)
        row(page, "kebab-renamed").wait_for(timeout=30_000)
        assert row(page, SOURCE).count() == 0
        assert (user / "kebab-renamed").is_dir() and not (user / SOURCE).exists()

        # Delete the copy from its menu: the bulk delete's confirmation, then row and folder go.
        menu(page, copy, "Delete experiment")
        dialog = page.get_by_role("dialog")
        dialog.get_by_text(f"Delete experiment {copy} and its folder?").wait_for(timeout=30_000)
        screenshot(page, "kebab_delete_dialog")
        dialog.get_by_role("button", name="Delete", exact=True).click()
        wait_for_text(page, "Deleted 1 experiment(s)", 60)
        row(page, copy).wait_for(state="detached", timeout=30_000)
        assert not (user / copy).exists()
        # Only the chosen experiment went.
        assert (user / "kebab-renamed").is_dir()
        row(page, "kebab-renamed").wait_for(timeout=10_000)
        screenshot(page, "kebab_deleted")
    log = (workdir / "launcher.log").read_text(errors="replace")
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 2000) :][:6000]
