"""The GUI's dataset pages in a real browser (Debian chromium + playwright), on a real app."""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path

import pytest
from conftest import pattern_rows
from gui_harness import browser_page, running_app, screenshot, wait_for_text
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

if shutil.which("chromium") is None:  # `make test` installs it; say so instead of skipping
    pytest.fail("Debian chromium is missing: run `make browser`", pytrace=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gui")


@pytest.fixture(scope="module")
def app_url(workdir):
    # keyring's "no backend" on any machine, so the Settings test sees the same message everywhere
    no_keyring = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    with running_app(workdir, no_keyring) as url:
        yield url


@pytest.fixture
def page(app_url):
    with browser_page() as page:
        yield page


def choose(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    time.sleep(0.5)


def user_datasets(workdir: Path) -> list[str]:
    root = workdir / "data" / "user"
    return (
        sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        if root.is_dir()
        else []
    )


def upload_and_configure(page, url: str, file: Path) -> None:
    page.goto(url + "#dataset/import")
    wait_for_text(page, "Source")
    page.set_input_files("input[type=file]", str(file))
    page.get_by_role("button", name="Upload").click()
    wait_for_text(page, "Configure dataset", 30)


def test_home_counts_and_default_datasets(page, app_url):
    page.goto(app_url)
    wait_for_text(page, "Disk free")
    screenshot(page, "home")
    assert page.locator("text=Memory free").count() == 1
    # Every stat's icon is one Wave's icon set has: it draws an svg of some size, not nothing.
    icons = page.locator("[data-test=home_stats] i[data-icon-name]")
    assert icons.count() == 6
    for i in range(icons.count()):
        icon = icons.nth(i)
        name = icon.get_attribute("data-icon-name")
        box = icon.locator("svg").bounding_box() if icon.locator("svg path").count() else None
        assert box and box["width"] > 0 and box["height"] > 0, f"icon {name} renders empty"
    page.goto(app_url + "#datasets")
    for name in ("demo-chat", "demo-dpo", "demo-classification", "demo-regression"):
        wait_for_text(page, name)
    screenshot(page, "view_datasets")


def test_import_csv_upload_configure_preview_continue(page, app_url, workdir, tmp_path):
    csv = tmp_path / "pattern.csv"
    pattern_rows(40).to_csv(csv, index=False)
    upload_and_configure(page, app_url, csv)
    page.get_by_label("Dataset name").fill("pattern-upload")
    screenshot(page, "import_configure")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "Data validity check")
    assert page.locator("text=Repeat red 1 times.").count() >= 1
    screenshot(page, "import_preview")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "pattern-upload")
    assert (workdir / "data" / "user" / "pattern-upload" / "cfg.yaml").is_file()
    # The upload left waved's data directory once the app had its copy.
    assert not list((workdir / "data" / "wave-files").rglob("pattern.csv"))


def test_import_parquet_and_zip_with_validation(page, app_url, workdir, tmp_path):
    parquet = tmp_path / "questions.parquet"
    pattern_rows(30).to_parquet(parquet)
    upload_and_configure(page, app_url, parquet)
    page.get_by_label("Dataset name").fill("from-parquet")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "Data validity check")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "from-parquet")

    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train.csv", pattern_rows(30).to_csv(index=False))
        zf.writestr("validation.csv", pattern_rows(10).to_csv(index=False))
    upload_and_configure(page, app_url, archive)
    page.get_by_label("Dataset name").fill("from-zip")
    expect(page.get_by_role("combobox", name="Validation dataframe")).to_have_text("validation.csv")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "Data validity check")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "from-zip")
    assert {"from-parquet", "from-zip"} <= set(user_datasets(workdir))


def test_import_by_local_path(page, app_url, workdir):
    local = workdir / "incoming.csv"
    pattern_rows(20).to_csv(local, index=False)
    page.goto(app_url + "#dataset/import")
    wait_for_text(page, "Source")
    choose(page, "Source", "Local")
    page.get_by_label("File location").fill(str(local))
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "Configure dataset", 30)
    page.get_by_label("Dataset name").fill("from-local")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "Data validity check")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "from-local")


def test_local_import_names_the_allowed_folders_and_keeps_a_refused_path(
    page, app_url, workdir, tmp_path, monkeypatch
):
    from llm_studio.connectors import local_roots

    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(workdir))
    roots = [str(root) for root in local_roots()]  # the app's: its HOME and its workdir
    outside = tmp_path / "outside.csv"
    pattern_rows(5).to_csv(outside, index=False)
    assert not any(outside.resolve().is_relative_to(root) for root in roots)

    page.goto(app_url + "#dataset/import")
    wait_for_text(page, "Source")
    choose(page, "Source", "Local")
    hint = page.get_by_text("Local import reads files only under")
    for root in roots:
        expect(hint).to_contain_text(root)
    expect(hint).to_contain_text("H2O_LLM_STUDIO_LOCAL_ROOTS")
    page.get_by_label("File location").fill(str(outside))
    page.get_by_role("button", name="Continue").click()
    error = page.get_by_text("is outside the allowed folders")
    expect(error).to_be_visible(timeout=30_000)
    for root in roots:
        expect(error).to_contain_text(root)
    expect(page.get_by_label("File location")).to_have_value(str(outside))
    screenshot(page, "import_local_outside_roots")

    page.goto(app_url + "#settings")
    wait_for_text(page, "Credential handler")
    shown = page.get_by_label("Allowed local folders")
    expect(shown).to_have_value(", ".join(roots))
    assert shown.get_attribute("readonly") is not None
    shown.scroll_into_view_if_needed()
    screenshot(page, "settings_local_roots")


def test_bad_file_is_refused_on_the_page_and_leaves_nothing(page, app_url, workdir, tmp_path):
    before = user_datasets(workdir)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    page.goto(app_url + "#dataset/import")
    wait_for_text(page, "Source")
    page.set_input_files("input[type=file]", str(empty))
    page.get_by_role("button", name="Upload").click()
    wait_for_text(page, "empty")
    screenshot(page, "import_error")
    assert page.locator("text=Configure dataset").count() == 0
    assert user_datasets(workdir) == before


def test_dataset_tabs(page, app_url):
    page.goto(app_url + "#datasets")
    page.get_by_text("demo-chat").first.click()
    wait_for_text(page, "Sample train data")
    wait_for_text(page, "instruction")
    screenshot(page, "tab_sample")
    expected = {
        "Sample train visualization": "User:",
        "Train data statistics": "Prompt length in words",
        "Summary": "Problem type",
    }
    for tab, text in expected.items():
        page.get_by_role("tab", name=tab).click()
        wait_for_text(page, text)
        screenshot(page, "tab_" + tab.split()[-1].lower())
    # A new experiment starts from the dataset being viewed.
    page.get_by_role("button", name="New experiment").click()
    wait_for_text(page, "Backbone dtype")
    expect(page.get_by_role("combobox", name="Dataset")).to_have_text("demo-chat")
    assert page.get_by_label("Experiment name").input_value() == "demo-chat-1"
    # The demo's context rows keep their text in `input`: the pre-filled prompt uses it too.
    expect(page.get_by_label("Prompt column", exact=True)).to_have_value("instruction,input")


def dark_pixels(canvas) -> int:
    """Opaque pixels of a chart canvas that are nearly black, as the bars are."""
    return canvas.evaluate(
        """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 200 && d[i] < 80) n++;
            return n;
        }"""
    )


def test_length_charts_for_constant_and_empty_columns(page, app_url, tmp_path):
    rows = pattern_rows(30)
    rows["instruction"] = "Say hello please"  # every prompt 3 words long
    rows["notes"] = ""  # a column with nothing in it
    csv = tmp_path / "constant.csv"
    rows.to_csv(csv, index=False)
    upload_and_configure(page, app_url, csv)
    page.get_by_label("Dataset name").fill("constant-prompts")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "Data validity check")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "View datasets")
    _open(page, app_url, "constant-prompts")
    wait_for_text(page, "Say hello please")
    assert "nan" not in page.locator("[data-test=sample_table]").inner_text().split()

    page.get_by_role("tab", name="Train data statistics").click()
    wait_for_text(page, "Prompt length in words")
    expect(page.get_by_text("Prompt length in words").locator("xpath=..")).to_contain_text(
        "(mean 3.0, median 3, max 3, 30 rows)"
    )
    # A drawn bar chart: its bars fill far more dark pixels than the axes' labels alone.
    for chart in ("prompt_length_chart", "answer_length_chart"):
        canvas = page.locator(f"[data-test={chart}] canvas")
        expect(canvas).to_have_count(1)
        deadline = time.time() + 15  # the bars grow in with an animation
        while dark_pixels(canvas) < 10_000 and time.time() < deadline:
            time.sleep(0.3)
        assert dark_pixels(canvas) >= 10_000, f"{chart} shows no bars"
    text = page.locator("[data-test=dataset]").inner_text()
    assert "nan" not in text.lower().split() and "3–3" not in text
    screenshot(page, "statistics_constant_lengths")


def _open(page, url, name) -> None:
    page.goto(url + "#datasets")
    page.get_by_text(name, exact=True).first.click()
    wait_for_text(page, "Edit dataset")


def test_edit_merge_and_delete(page, app_url, workdir):
    from llm_studio.store import ExperimentRecord, Store

    _open(page, app_url, "demo-regression")
    page.get_by_role("button", name="Edit dataset").click()
    wait_for_text(page, "Configure dataset")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "Data validity check")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "View datasets")

    _open(page, app_url, "demo-regression")
    page.get_by_role("button", name="Merge with existing dataset").click()
    # The first other dataset is pre-selected: demo-chat.
    expect(page.get_by_role("combobox", name="Dataset to merge")).to_have_text("demo-chat")
    page.get_by_role("button", name="Merge", exact=True).click()
    wait_for_text(page, "Merged demo_train.csv into demo-regression")
    assert (workdir / "data" / "user" / "demo-regression" / "demo_train.csv").is_file()

    page.get_by_role("button", name="Delete dataset").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    wait_for_text(page, "Deleted demo-regression")
    assert "demo-regression" not in user_datasets(workdir)

    # A dataset an experiment uses cannot go.
    store = Store(workdir / "data" / "dbs" / "llmstudio.db")
    chat = store.get_dataset_by_name("demo-chat")
    store.add_experiment(
        ExperimentRecord(
            name="first-run",
            dataset_id=chat.id,
            path=str(workdir / "output" / "user" / "first-run"),
            problem_type=chat.problem_type,
        )
    )
    _open(page, app_url, "demo-chat")
    page.get_by_role("button", name="Delete dataset").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    wait_for_text(page, "first-run")
    screenshot(page, "delete_refused")
    assert "demo-chat" in user_datasets(workdir)


def test_settings_persist_and_secrets_stay_hidden(page, app_url, workdir):
    secret = "sk-browser-test-secret-42"
    env_file = workdir / "data" / "dbs" / "secrets.env"
    page.goto(app_url + "#settings")
    wait_for_text(page, "Credential handler")
    # The default keeps keys out of every file.
    expect(page.get_by_role("combobox", name="Credential handler")).to_have_text(
        "Not saved (environment and this browser session only)"
    )
    page.get_by_label("OpenAI API key").fill(secret)
    page.get_by_role("button", name="Save settings").click()
    wait_for_text(page, "Settings saved")
    assert not env_file.exists()
    # The system keyring, with no backend on this machine: a clear message, nothing saved.
    choose(page, "Credential handler", "System keyring")
    page.get_by_label("OpenAI API key").fill(secret)
    page.get_by_role("button", name="Save settings").click()
    wait_for_text(page, "No system keyring was found")
    # The clear-text file only as an explicit choice.
    choose(page, "Credential handler", "Local file data/dbs/secrets.env (clear text, owner-only)")
    page.get_by_label("OpenAI API key").fill(secret)
    choose(page, "Theme", "h2o-dark")
    page.get_by_role("button", name="Save settings").click()
    wait_for_text(page, "Settings saved")
    page.reload()
    page.goto(app_url + "#settings")
    wait_for_text(page, "Credential handler")
    screenshot(page, "settings")
    expect(page.get_by_role("combobox", name="Theme")).to_have_text("h2o-dark")
    assert secret not in page.content()
    assert secret in env_file.read_text()
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_restart_keeps_everything_imported(tmp_path):
    workdir = tmp_path / "restart"
    csv = tmp_path / "kept.csv"
    pattern_rows(20).to_csv(csv, index=False)
    with running_app(workdir) as url, browser_page() as page:
        upload_and_configure(page, url, csv)
        page.get_by_label("Dataset name").fill("kept-after-restart")
        page.get_by_role("button", name="Continue").click()
        wait_for_text(page, "Data validity check")
        page.get_by_role("button", name="Continue").click()
        wait_for_text(page, "kept-after-restart")
    with running_app(workdir) as url, browser_page() as page:
        page.goto(url + "#datasets")
        for name in ("demo-chat", "kept-after-restart"):
            wait_for_text(page, name)
