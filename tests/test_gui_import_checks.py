"""The import wizard in a real browser shows what the checks found: the backbone's own EOS
in the preview, counts of empty answers, cut previews of long cells, a refused file's reason;
and it leaves no staged files behind (issues 11.6 and 12)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from gui_harness import browser_page, running_app, screenshot, wait_for_text

pytestmark = pytest.mark.slow

if shutil.which("chromium") is None:  # `make test` installs it; say so instead of skipping
    pytest.fail("Debian chromium is missing: run `make browser`", pytrace=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("gui-checks")
    (work / "data").mkdir()
    # The prepared default backbone (make setup) lives outside any workdir: nothing to link.
    return work


@pytest.fixture(scope="module")
def app_url(workdir):
    with running_app(workdir) as url:
        yield url


def staged(workdir: Path) -> list[Path]:
    tmp = workdir / "data" / "tmp"
    return sorted(tmp.glob("import-*")) if tmp.is_dir() else []


def upload(page, url: str, file: Path) -> None:
    page.goto(url + "#dataset/import")
    wait_for_text(page, "Source")
    page.set_input_files("input[type=file]", str(file))
    page.get_by_role("button", name="Upload").click()


def test_preview_shows_backbone_eos_counts_and_cut_cells(app_url, workdir, tmp_path):
    rows = ["instruction,output"] + [f"Question {i}?,Answer {i}." for i in range(10)]
    rows[3] = "Question 2?,"  # one empty answer
    rows[4] = "Question 3?," + "long " * 40_000  # 200,000 characters
    csv = tmp_path / "checked.csv"
    csv.write_text("\n".join(rows) + "\n")
    with browser_page() as page:
        upload(page, app_url, csv)
        wait_for_text(page, "Configure dataset", 30)
        page.get_by_role("button", name="Continue").click()
        wait_for_text(page, "Data validity check", 30)
        screenshot(page, "import_checks_preview")
        body = page.inner_text("body")
        assert "<|im_end|>" in body and "</s>" not in body
        assert "checked.csv: 1 of 10 rows have an empty" in body and "row 2" in body
        assert "characters not shown" in body
        page.get_by_role("button", name="Continue").click()
        wait_for_text(page, "Datasets", 30)
    assert (workdir / "data" / "user" / "checked" / "cfg.yaml").is_file()
    assert staged(workdir) == []


def test_refused_and_abandoned_imports_leave_nothing_staged(app_url, workdir, tmp_path):
    huge = tmp_path / "huge.csv"
    with open(huge, "w") as fh:  # a 30 MiB cell once broke the page with a 413
        fh.write("instruction,output\nq," + "x" * (30 * 1024 * 1024) + "\n")
    good = tmp_path / "good.csv"
    good.write_text("instruction,output\nq1,a1\nq2,a2\n")
    with browser_page() as page:
        upload(page, app_url, huge)
        wait_for_text(page, "more than the limit of 1000000 characters", 60)
        screenshot(page, "import_checks_huge_cell")
        assert staged(workdir) == []
        upload(page, app_url, good)
        wait_for_text(page, "Configure dataset", 30)
        assert len(staged(workdir)) == 1
        page.get_by_role("button", name="Cancel").click()  # leave the wizard
        wait_for_text(page, "Source")
        assert staged(workdir) == []
