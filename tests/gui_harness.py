"""Drive the real app in Debian's chromium: start waved + app on free ports in a temp workdir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_launcher(workdir: Path, port: int, extra_env: dict | None = None, **popen):
    """`python -m llm_studio.ui.launch start` on `port`, with `workdir` as H2O_LLM_STUDIO_WORKDIR."""
    env = {
        **os.environ,
        "H2O_LLM_STUDIO_WORKDIR": str(workdir),
        "H2O_WAVE_LISTEN": f"127.0.0.1:{port}",
        "H2O_WAVE_ADDRESS": f"http://127.0.0.1:{port}",
        **(extra_env or {}),
    }
    env.pop("H2O_WAVE_APP_ADDRESS", None)
    command = [sys.executable, "-m", "llm_studio.ui.launch", "start", "--port", str(port)]
    return subprocess.Popen(command, cwd=REPO, env=env, **popen), env


@contextmanager
def running_app(workdir: Path, extra_env: dict | None = None):
    """Yield the app's URL; stop both processes by PID afterwards (waved would be orphaned)."""
    port = _free_port()
    launcher, _ = start_launcher(
        workdir, port, extra_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_until_up(launcher)
        # Keep draining the pipe so the servers never block on a full one.
        import threading

        def drain():
            with open(workdir / "launcher.log", "a") as fh:
                for rest in launcher.stdout:
                    fh.write(rest)
                    fh.flush()  # tests read the log while the app runs

        threading.Thread(target=drain, daemon=True).start()
        yield f"http://127.0.0.1:{port}/"
    finally:
        _stop_app(launcher, workdir)


def _wait_until_up(launcher: subprocess.Popen) -> None:
    """Read the launcher's output until it says the app is up; RuntimeError with its last
    lines if it ends first or takes over 90 s."""
    # waved and the app print to the same pipe: read until the launcher says it is up.
    seen = []
    deadline = time.time() + 90
    while time.time() < deadline:
        line = launcher.stdout.readline()
        if not line:
            break
        seen.append(line)
        if "LLM Studio is at" in line:
            break
    else:
        raise RuntimeError("the app did not start in time:\n" + "".join(seen[-30:]))
    if not seen or "LLM Studio is at" not in seen[-1]:
        raise RuntimeError("the app did not start:\n" + "".join(seen[-30:]))


def _stop_app(launcher: subprocess.Popen, workdir: Path) -> None:
    """Stop the launcher, then the app and waved by the PIDs it wrote down."""
    pids = workdir / "data" / "llmstudio.pids"
    known = json.loads(pids.read_text()) if pids.is_file() else {}
    launcher.send_signal(signal.SIGINT)
    try:
        launcher.wait(timeout=20)
    except subprocess.TimeoutExpired:
        launcher.kill()
    for name in ("app", "waved"):
        pid = (known.get(name) or {}).get("pid")
        if pid:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


@contextmanager
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_for_text(page, text: str, timeout: float = 20.0) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=timeout * 1000)


def goto(page, url: str, hash_: str) -> None:
    page.goto(f"{url}#{hash_}")
    time.sleep(0.2)


def wait_for_app_port(workdir: Path, timeout: float = 60.0) -> None:
    """The launcher says "up" once waved answers, maybe before the app listens; a browser that
    connects in that gap makes waved drop the app for good. Wait until the app's port answers."""
    pids = json.loads((workdir / "data" / "llmstudio.pids").read_text())
    environ = Path(f"/proc/{pids['app']['pid']}/environ").read_bytes().decode(errors="replace")
    env = dict(kv.split("=", 1) for kv in environ.split("\0") if "=" in kv)
    host, port = env["H2O_WAVE_APP_ADDRESS"].split("//", 1)[1].rsplit(":", 1)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the app never listened on {host}:{port}")


# --- View experiments' table ---


def row(page, name: str):
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


def cell(page, name: str, key: str) -> str:
    try:
        return row(page, name).locator(f'[data-automation-key="{key}"]').inner_text(timeout=5000)
    except Exception:  # the 2 s refresh swapped the row out under us: read again next time
        return ""


def percent(text: str) -> float | None:
    text = text.strip().rstrip("%")
    try:
        return float(text)
    except ValueError:
        return None


def wait_status(page, name: str, wanted: tuple[str, ...], timeout: float) -> list[tuple]:
    """Poll the row's Status and Progress cells (no reload); return what was seen over time."""
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, progress = cell(page, name, "status"), percent(cell(page, name, "progress"))
        if status and (not seen or seen[-1] != (status, progress)):
            seen.append((status, progress))
        if status in wanted:
            return seen
        assert status not in ("failed",), f"{name} failed: {seen}"
        time.sleep(1)
    raise AssertionError(f"{name} never reached {wanted}; seen {seen}")


# --- a row's kebab menu on View experiments ---


def open_menu(page, name: str) -> None:
    """Open the kebab menu of `name`'s row (retrying: a click while the page is still
    settling, or the list's 2 s refresh swapping the row, can leave it closed)."""
    first = page.get_by_role("menuitem").first
    for _ in range(5):
        row(page, name).locator("[data-test=row_commands]").click()
        try:
            first.wait_for(timeout=3000)
            return
        except Exception:
            time.sleep(0.5)
    raise AssertionError(f"the menu of {name} did not open")


def menu(page, name: str, command: str) -> None:
    """Click `command` in the kebab menu of `name`'s row."""
    open_menu(page, name)
    page.get_by_role("menuitem", name=command, exact=True).click()


# --- the app's store, filled before the app starts ---


def add_dataset(workdir: Path, name: str, csv: Path, problem_type: str, config_file=None):
    """A dataset record in the app's store (`config_file` defaults to one that is never read)."""
    from llm_studio.store import DatasetRecord, Store

    store = Store(workdir / "data" / "dbs" / "llmstudio.db")
    return store.add_dataset(
        DatasetRecord(
            name=name,
            path=str(workdir),
            config_file=str(config_file or workdir / "dataset.yaml"),
            problem_type=problem_type,
            train_dataframe=str(csv),
        )
    )


def add_experiment(workdir: Path, dataset, folder: Path, problem_type: str):
    """An experiment record for `folder` (named after it, its cfg.yaml in it) in the store."""
    from llm_studio.store import ExperimentRecord, Store

    store = Store(workdir / "data" / "dbs" / "llmstudio.db")
    return store.add_experiment(
        ExperimentRecord(
            name=folder.name,
            dataset_id=dataset.id,
            path=str(folder),
            problem_type=problem_type,
            config_file=str(folder / "cfg.yaml"),
        )
    )
