"""What a newcomer sees of experiments in a real browser (issue 11): the Home icons, the list
(checkboxes, columns in view at 1600 px, live tokens/s, Stop with nothing selected), the Summary
tab the guide lists, readable charts (colours, legend, rounded axes), and a live run's page
(it follows the run and leaves nothing behind when the user goes elsewhere)."""

from __future__ import annotations

import colorsys
import io
import re
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

# Every text the charts draw on their canvases, recorded as the browser draws it.
RECORD_CANVAS_TEXT = """
window.__drawn = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
  window.__drawn.push(String(text));
  return fillText.call(this, text, ...rest);
};
"""
BLEU = 11.51015341649912  # a validation value as training writes it


def seed_experiment(workdir: Path, dataset, csv: Path, name: str, throughput: bool) -> Path:
    """A finished run's folder (cfg.yaml, status, charts) and its record in the app's store."""
    from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus

    out = workdir / "output" / "user" / name
    out.mkdir(parents=True)
    data = tiny_config(Path("tiny-llama"), csv, out)
    data["experiment_name"] = name
    data["environment"]["seed"] = 4321  # the seed drawn for the run, as training writes it
    (out / "cfg.yaml").write_text(yaml.safe_dump(data))
    folder = ExperimentFolder(out)
    for step in range(1, 21):
        folder.append_chart("train/loss", step, 3.0 - step * 0.07123456789, step / 20)
        folder.append_chart("train/lr", step, 1e-4 * (1 - step / 21), step / 20)
        if throughput:
            folder.append_chart("train/tokens_per_s", step, 1500.0 + step * 1.3579, step / 20)
    folder.append_chart("validation/loss", 20, 2.123456789012, 1.0)  # one validation: one point
    folder.append_chart("validation/BLEU", 20, BLEU, 1.0)
    folder.write_status(
        ExperimentStatus(
            state="finished", step=20, total_steps=20, epoch=1.0, progress=1.0,
            started_at=time.time() - 125,
        )
    )  # fmt: skip
    add_experiment(workdir, dataset, out, data["problem_type"])
    return out


def significant_digits(label: str) -> int:
    """0 for a label that is no plain number; else its significant digits (0.000025 has 2)."""
    if not re.fullmatch(r"-?[\d,]*\.?\d+", label):
        return 0
    digits = label.replace(",", "").replace("-", "")
    if "." not in digits:
        digits = digits.rstrip("0")  # 1,500 has 2
    return len(digits.replace(".", "").lstrip("0"))


def hue_pixels(png: bytes) -> dict[str, int]:
    """Count the clearly coloured pixels of a screenshot by hue family."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    counts = {"blue": 0, "orange": 0, "other": 0}
    raw = image.tobytes()
    for i in range(0, len(raw), 3):
        r, g, b = raw[i : i + 3]
        h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        if s < 0.45 or v < 0.35:
            continue  # greys, text, background
        if 0.5 < h < 0.72:
            counts["blue"] += 1
        elif 0.02 < h < 0.14:
            counts["orange"] += 1
        else:
            counts["other"] += 1
    return counts


def test_experiment_list_summary_and_charts(tmp_path):
    workdir = tmp_path / "gui-pages"
    workdir.mkdir()
    csv = workdir / "pattern.csv"
    pattern_rows(48).to_csv(csv, index=False)
    dataset = add_dataset(workdir, "pattern", csv, "text_causal_language_modeling")
    seed_experiment(workdir, dataset, csv, "seeded-old", throughput=False)  # before tokens/s
    seed_experiment(workdir, dataset, csv, "seeded-run", throughput=True)
    with running_app(workdir) as url, browser_page() as page:
        wait_for_app_port(workdir)
        page.set_viewport_size({"width": 1600, "height": 1000})
        page.add_init_script(RECORD_CANVAS_TEXT)

        # Home: every stat has its icon drawn (an unknown Fluent name renders an empty glyph).
        page.goto(url + "#home")
        wait_for_text(page, "Getting started", 30)
        icons = page.locator("[data-icon-name]")
        drawn = "els => els.map(e => [e.dataset.iconName, e.querySelectorAll('svg path').length])"
        names = icons.evaluate_all(drawn)
        assert len(names) >= 17, names  # header, nav and the six stats
        empty = [n for n, paths in names if not paths]
        assert not empty, f"icons without a glyph: {empty}"
        screenshot(page, "pages_home")

        # View experiments at 1600 px: every column in view, checkboxes shown without hovering,
        # the live throughput per row ("—" for a run from before tokens/s was written).
        page.goto(url + "#experiments")
        row(page, "seeded-run").wait_for(timeout=30_000)
        page.mouse.move(0, 0)
        time.sleep(0.5)
        screenshot(page, "pages_experiments_1600")
        for header in ("Tokens/s", "ETA", "Start time"):
            box = page.get_by_role("columnheader", name=header).bounding_box()
            assert box is not None and box["x"] + box["width"] <= 1600, (header, box)
        checkbox = row(page, "seeded-run").get_by_role("checkbox")
        assert checkbox.evaluate("e => getComputedStyle(e).opacity") == "1"
        tokens = row(page, "seeded-run").locator('[data-automation-key="tokens_per_s"]')
        expect(tokens).to_have_text("1,527")
        old = row(page, "seeded-old").locator('[data-automation-key="tokens_per_s"]')
        expect(old).to_have_text("—")

        # Stop experiments with nothing selected asks for a selection, as Delete does.
        page.get_by_role("button", name="Stop experiments").click()
        wait_for_text(page, "Select experiments first.", 30)
        assert page.get_by_text("Stopping 0").count() == 0
        screenshot(page, "pages_stop_nothing_selected")

        # Summary: what the guide lists.
        row(page, "seeded-run").get_by_role("link", name="seeded-run").click()
        page.get_by_role("tab", name="Summary").click()
        wait_for_text(page, "Loss function", 30)
        summary = page.locator('[data-test="experiment_body"]').inner_text()
        for label, value in {
            "Dataset": "pattern",
            "Seed": "4321",
            "GPUs": "none (CPU)",
            "Loss function": "TokenAveragedCrossEntropy",
            "Metric": "BLEU",
            "Best validation BLEU": "11.5102",
            "Tokens/s": "1,527",
            "Run time": "0:02:05",
        }.items():
            assert re.search(rf"{re.escape(label)}\s+{re.escape(value)}", summary), (label, summary)
        screenshot(page, "pages_summary")

        # Charts: train and validation in two colours with a legend; axes in rounded numbers.
        page.evaluate("window.__drawn = []")
        page.get_by_role("tab", name="Charts").click()
        loss = page.locator('[data-test="chart_loss"]')
        loss.locator("canvas").first.wait_for(timeout=30_000)
        page.locator('[data-test="chart_BLEU"] canvas').first.wait_for(timeout=30_000)
        time.sleep(2)  # let the plots draw
        screenshot(page, "pages_charts")
        colours = hue_pixels(loss.screenshot())
        assert colours["blue"] > 50 and colours["orange"] > 20, colours
        drawn = page.evaluate("window.__drawn")
        assert {"train", "validation"} <= set(drawn), drawn
        assert any(t.startswith("11.5") for t in drawn), drawn  # the lone BLEU, rounded
        long_numbers = [t for t in drawn if significant_digits(t) > 5]
        assert not long_numbers, long_numbers

        # A run from before tokens/s: its Summary says so plainly.
        page.goto(url + "#experiments")
        row(page, "seeded-old").get_by_role("link", name="seeded-old").click()
        page.get_by_role("tab", name="Summary").click()
        wait_for_text(page, "Loss function", 30)
        summary = page.locator('[data-test="experiment_body"]').inner_text()
        assert re.search(r"Tokens/s\s+—", summary), summary
    log = (workdir / "launcher.log").read_text(errors="replace")
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 2000) :][:6000]


def chart_cards(page) -> list[str]:
    return page.locator('[data-test^="chart_"]').evaluate_all("els => els.map(e => e.dataset.test)")


def set_data_sample(page, value: float) -> None:
    """A slider from 0.01 in steps of 0.01: Home, then arrow keys."""
    slider = page.get_by_role("slider", name="Data sample")
    slider.focus()
    slider.press("Home")
    for _ in range(round((value - 0.01) / 0.01)):
        slider.press("ArrowRight")
    assert float(slider.get_attribute("aria-valuenow")) == pytest.approx(value)


def end_training(folder: Path) -> None:
    """Kill the run if a failed test left it going (the app's teardown leaves it orphaned)."""
    import psutil

    from llm_studio.experiments.folder import ExperimentFolder, process_alive

    status = ExperimentFolder(folder).read_status()
    if status is not None and process_alive(status.pid, status.pid_start_time):
        psutil.Process(status.pid).kill()


def test_live_experiment_page_follows_the_run_and_leaves_nothing_behind(tmp_path, tiny_model_dir):
    workdir = tmp_path / "gui-live"
    try:
        with running_app(workdir) as url, browser_page() as page:
            wait_for_app_port(workdir)
            page.add_init_script(RECORD_CANVAS_TEXT)
            follow_a_run(page, url, tiny_model_dir)
    finally:
        end_training(workdir / "output" / "user" / "gui-live")
    log = (workdir / "launcher.log").read_text(errors="replace")
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 2000) :][:6000]


def follow_a_run(page, url: str, tiny_model_dir: Path) -> None:
    # Create experiment with the form's defaults: the tiny backbone (float32 on a CPU) on a
    # tenth of demo-chat, to keep the run short.
    page.goto(url + "#experiment/start")
    wait_for_text(page, "Run experiment", 60)
    page.get_by_role("combobox", name="Dataset").click()
    page.get_by_role("option", name="demo-chat", exact=True).click()
    time.sleep(0.5)
    page.get_by_label("Experiment name").fill("gui-live")
    page.get_by_label("LLM backbone").fill(str(tiny_model_dir))
    page.get_by_role("combobox", name="Backbone dtype").click()
    page.get_by_role("option", name="float32", exact=True).click()
    time.sleep(0.5)
    set_data_sample(page, 0.1)
    page.get_by_role("button", name="Run experiment").click()
    anyway = page.get_by_role("button", name="Run anyway")
    deadline = time.time() + 60
    while not row(page, "gui-live").count():
        assert time.time() < deadline, "Run experiment did not list gui-live"
        if anyway.count():
            anyway.click()
        time.sleep(0.5)

    # Its page, opened at once (the training process is still starting): it follows the run,
    # the charts replacing the placeholder, the header its state, all without a reload.
    started = time.time()
    row(page, "gui-live").get_by_role("link", name="gui-live").click()
    header = page.get_by_text(re.compile(r"^Experiment gui-live \("))
    header.wait_for(timeout=30_000)
    page.evaluate("window.__not_reloaded = true")
    print("opened as:", header.inner_text(), chart_cards(page))
    assert chart_cards(page) == ["chart_none"], "the run drew charts before its page opened"
    assert header.inner_text() != "Experiment gui-live (finished)"
    page.locator('[data-test="chart_loss"] canvas').first.wait_for(timeout=300_000)
    expect(page.get_by_text("No chart points yet.")).to_have_count(0, timeout=10_000)
    print(f"charts after {time.time() - started:.0f} s:", header.inner_text())
    screenshot(page, "pages_live_charts")
    expect(header).to_have_text("Experiment gui-live (finished)", timeout=600_000)
    print(f"finished after {time.time() - started:.0f} s")
    assert page.evaluate("window.__not_reloaded === true"), "the page reloaded"
    page.locator('[data-test="chart_BLEU"] canvas').first.wait_for(timeout=30_000)
    expect(page.get_by_text("No chart points yet.")).to_have_count(0)
    time.sleep(1)  # let the last refresh draw
    screenshot(page, "pages_live_finished")
    drawn = page.evaluate("window.__drawn")
    assert {"train", "validation"} <= set(drawn), drawn
    long_numbers = [t for t in drawn if significant_digits(t) > 5]
    assert not long_numbers, long_numbers  # e.g. tick arithmetic as 6.289999999999999

    # Leaving the page takes its cards (those the refresh added too) and its refresh along.
    for nav, card in (
        ("Home", "home_stats"),
        ("Import dataset", "import"),
        ("View datasets", "datasets"),
    ):
        page.get_by_role("link", name=nav, exact=True).or_(
            page.get_by_role("button", name=nav, exact=True)
        ).first.click()
        page.locator(f'[data-test="{card}"]').wait_for(timeout=30_000)
        time.sleep(2.5)  # more than a refresh period
        assert chart_cards(page) == [], (nav, chart_cards(page))
        assert page.locator("canvas").count() == 0, nav
        screenshot(page, "pages_live_left_" + nav.split()[0].lower())
