"""What a newcomer met walking the GUI in chromium, fixed: a download's error notification that
followed them to other pages, export buttons offered with nothing to export, no Stop on a
running experiment's page, float noise on Compare's axes, a taken name reported by its YAML key
and a delete question that did not say what it deletes. One app start for all of them."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import pattern_rows, tiny_config
from gui_harness import (
    add_dataset,
    add_experiment,
    browser_page,
    running_app,
    screenshot,
    wait_for_app_port,
    wait_for_text,
)
from playwright.sync_api import expect
from test_gui_experiment_pages import RECORD_CANVAS_TEXT, significant_digits

pytestmark = pytest.mark.slow

if shutil.which("chromium") is None:  # `make test` installs it; say so instead of skipping
    pytest.fail("Debian chromium is missing: run `make browser`", pytrace=False)


def seed(workdir: Path, dataset, csv: Path, name: str, state: str, **status) -> object:
    """An experiment folder (cfg.yaml, charts, status) and its record; returns the record."""
    from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus

    out = workdir / "output" / "user" / name
    out.mkdir(parents=True)
    data = tiny_config(Path("tiny-llama"), csv, out)
    data["experiment_name"] = name
    (out / "cfg.yaml").write_text(yaml.safe_dump(data))
    folder = ExperimentFolder(out)
    for step in range(1, 21):  # values as training writes them, every digit
        folder.append_chart("train/loss", step, 6.5 - step * 0.07123456789, step / 20)
    if state == "finished":  # one validation at the end: a lone point, drawn with every digit
        folder.append_chart("validation/BLEU", 20, 11.51015341649912, 1.0)
    folder.write_status(ExperimentStatus(state=state, started_at=time.time() - 60, **status))
    return add_experiment(workdir, dataset, out, data["problem_type"])


def long_numbers(drawn: list[str]) -> list[str]:
    """Labels with more than 5 significant digits (tick arithmetic, unrounded values)."""
    return [t for t in drawn if significant_digits(t) > 5]


def on_screen(page, locator) -> bool:
    """Shown in the window (a closed notification slides out to the right, still in the DOM)."""
    if not locator.count():
        return False
    box = locator.first.bounding_box()
    return box is not None and box["x"] < page.viewport_size["width"] and locator.first.is_visible()


def wait_until(condition, why: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, why
        time.sleep(0.2)


def test_walk_fixes(tmp_path):
    from llm_studio.runner import processes

    workdir = tmp_path / "gui-walk"
    workdir.mkdir()
    csv = workdir / "pattern.csv"
    pattern_rows(48).to_csv(csv, index=False)
    dataset = add_dataset(workdir, "pattern", csv, "text_causal_language_modeling")
    done = seed(workdir, dataset, csv, "walk-done", "finished", progress=1.0)
    checkpoint = Path(done.path) / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")  # what the export code checks for
    failed = seed(workdir, dataset, csv, "walk-failed", "failed", error="boom")
    # A "training process" of our own, in its own process group, as the runner starts them.
    sleeper = subprocess.Popen(["sleep", "600"], start_new_session=True)
    running = seed(
        workdir, dataset, csv, "walk-running", "running",
        pid=sleeper.pid, pid_start_time=processes.start_time_of(sleeper.pid),
    )  # fmt: skip
    for n in range(4):  # seven experiments in all, for the delete question's "and 2 more"
        seed(workdir, dataset, csv, f"walk-extra-{n}", "finished", progress=1.0)
    try:
        with running_app(workdir) as url, browser_page() as page:
            wait_for_app_port(workdir)
            page.add_init_script(RECORD_CANVAS_TEXT)
            walk(page, url, done, failed, running, sleeper)
    finally:
        sleeper.kill()
        sleeper.wait()
    log = (workdir / "launcher.log").read_text(errors="replace")
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 2000) :][:6000]


def walk(page, url: str, done, failed, running, sleeper) -> None:
    button = lambda name: page.get_by_role("button", name=name, exact=True)  # noqa: E731

    # 2. A run that never saved a checkpoint: nothing to download or push, and it says why;
    # its logs are there to download.
    page.goto(f"{url}#experiment/{failed.id}")
    wait_for_text(page, "Experiment walk-failed (failed)", 30)
    for name in ("Download model", "Download adapter", "Push checkpoint to huggingface"):
        expect(button(name)).to_be_disabled()
    expect(button("Download logs")).to_be_enabled()
    expect(button("Download predictions")).to_be_disabled()  # no validation has run
    button("Download model").hover(force=True)
    wait_for_text(page, "Available when the experiment has saved a checkpoint.", 10)
    assert button("Stop experiment").count() == 0  # nothing to stop
    screenshot(page, "walk_no_checkpoint")

    # 1. A download that fails (its checkpoint deleted after the page showed): the error shows,
    # can be closed, and does not follow the user to View experiments or Compare.
    page.goto(f"{url}#experiment/{done.id}")
    wait_for_text(page, "Experiment walk-done (finished)", 30)
    expect(button("Download model")).to_be_enabled()
    shutil.rmtree(Path(done.path) / "checkpoint")
    button("Download model").click()
    notice = page.get_by_text("The model download failed")
    notice.wait_for(timeout=30_000)
    screenshot(page, "walk_download_error")
    page.locator(".ms-MessageBar-dismissal").click()  # an error stays until closed: its ✕
    wait_until(lambda: not on_screen(page, notice), "the closed error stays on screen")
    button("Download model").click()  # a second failure shows again
    wait_until(lambda: on_screen(page, notice), "the second error is not shown")
    page.get_by_role("link", name="View experiments", exact=True).or_(
        page.get_by_role("button", name="View experiments", exact=True)
    ).first.click()
    page.get_by_role("link", name="walk-done", exact=True).wait_for(timeout=30_000)
    time.sleep(2.5)  # past a refresh of the list
    assert not on_screen(page, notice), "the download error followed to View experiments"
    page.get_by_role("link", name="Compare experiments", exact=True).or_(
        page.get_by_role("button", name="Compare experiments", exact=True)
    ).first.click()
    wait_for_text(page, "Select the experiments to compare", 30)
    time.sleep(1)
    assert not on_screen(page, notice), "the download error followed to Compare experiments"
    screenshot(page, "walk_notice_gone")

    # 4. Compare's charts: axes in rounded numbers (no 6.299999999999999).
    for name in ("walk-done", "walk-failed"):
        page.get_by_role("row", name=re.compile(name)).get_by_role("checkbox").click()
    page.evaluate("window.__drawn = []")
    button("Compare experiments").click()
    wait_for_text(page, "Last values", 30)
    for chart in ("compare_chart_0", "compare_chart_1"):  # train/loss, validation/BLEU
        page.locator(f"[data-test={chart}] canvas").first.wait_for(timeout=30_000)
    time.sleep(2)  # let the plots draw
    screenshot(page, "walk_compare_charts")
    drawn = page.evaluate("window.__drawn")
    assert {"walk-done", "walk-failed"} <= set(drawn), drawn  # the legend
    assert any(t.startswith("5.") for t in drawn), drawn
    assert any(t.startswith("11.5") for t in drawn), drawn  # the lone BLEU, rounded
    assert not long_numbers(drawn), long_numbers(drawn)

    # 3. A running experiment's page has Stop experiment; it stops the run and goes away.
    page.goto(f"{url}#experiment/{running.id}")
    wait_for_text(page, "Experiment walk-running (running)", 30)
    expect(button("Download model")).to_be_disabled()  # not saved yet
    button("Stop experiment").click()
    expect(page.get_by_text("Experiment walk-running (stopped)")).to_have_count(1, timeout=60_000)
    expect(button("Stop experiment")).to_have_count(0, timeout=10_000)
    assert sleeper.poll() is not None, "the run's process is still alive"
    screenshot(page, "walk_stopped")

    # 6. The delete question names what it deletes: five names, then how many more.
    page.goto(f"{url}#experiments")
    page.get_by_role("link", name="walk-done", exact=True).wait_for(timeout=30_000)
    page.get_by_role("row").filter(
        has=page.get_by_role("link", name="walk-done", exact=True)
    ).get_by_role("checkbox").click()
    button("Delete experiments").click()
    wait_for_text(page, "Delete experiment walk-done and its folder?", 10)
    button("Cancel").click()
    page.get_by_role("columnheader").get_by_role("checkbox").first.click()  # all seven
    button("Delete experiments").click()
    question = page.get_by_text(re.compile(r"^Delete experiments .* and 2 more and their folders"))
    question.wait_for(timeout=10_000)
    assert question.inner_text().count("walk-") == 5, question.inner_text()
    screenshot(page, "walk_delete_question")
    button("Cancel").click()
