"""The checks of `make docker-test` against a container started as the guide says.

Run on the host with the host's environment (playwright + Debian's chromium); the container's
`data/` and `output/` are the host folders under `--host-dir`. Each check prints what it saw and
fails with a message saying what was expected.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from gui_harness import browser_page, screenshot, wait_for_text  # noqa: E402

TINY = "/tmp/tiny-llama"  # inside the container: a tiny random Llama, built in seconds
STOP_BOUND_S = 10.0

# Runs inside the container (`docker exec -i <c> python -`): a long experiment on the tiny model,
# submitted through the runner and recorded in the store, as the GUI would.
SUBMIT_LONG_EXPERIMENT = f"""
import yaml
from pathlib import Path
from llm_studio.runner import Runner
from llm_studio.store import DatasetRecord, ExperimentRecord, Store
from llm_studio.store.db import experiment_dir

store = Store()
dataset = store.add_dataset(DatasetRecord(
    name="docker-stop-data", path="/workspace/examples/data", config_file="/dev/null",
    problem_type="text_causal_language_modeling",
    train_dataframe="/workspace/examples/data/demo_train.csv"))
folder = experiment_dir("docker-stop")
folder.mkdir(parents=True)
cfg = yaml.safe_load(Path("examples/example_demo.yaml").read_text())
cfg.update(llm_backbone="{TINY}", output_directory=str(folder), experiment_name="docker-stop")
cfg["training"]["epochs"] = 100
cfg["dataset"]["data_sample"] = 1.0
(folder / "cfg.yaml").write_text(yaml.safe_dump(cfg))
record = store.add_experiment(ExperimentRecord(
    name="docker-stop", dataset_id=dataset.id, path=str(folder),
    problem_type="text_causal_language_modeling", config_file=str(folder / "cfg.yaml")))
print(Runner(store).submit(record, gpus=[]), folder)
"""


def docker(*args: str, stdin: str | None = None, timeout: float = 600) -> str:
    result = subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def wait_until(what: str, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(0.5)


def check_home_page(page, url: str) -> None:
    page.goto(url)
    wait_for_text(page, "Disk free", 60)
    screenshot(page, "docker_home")
    print(f"ok: chromium shows the home page at {url}")


def check_train_py(container: str, host: Path) -> None:
    # The image holds no tests: the builder's source goes in on stdin, to run on the image's
    # own transformers.
    build = (REPO / "tests" / "tiny_model.py").read_text() + f"\nbuild_tiny_llama(Path({TINY!r}))\n"
    docker("exec", "-i", container, "python", "-", stdin=build)
    docker("exec", container, "python", "train.py", "-Y", "examples/example_demo.yaml",
           "--llm_backbone", TINY, "--output_directory", "output/user/docker-cli",
           "--experiment_name", "docker-cli", "--training.epochs", "1",
           "--dataset.data_sample", "0.2")  # fmt: skip
    folder = host / "output" / "user" / "docker-cli"
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "finished", f"{folder}/status.json says {status}"
    assert (folder / "cfg.yaml").is_file(), f"no cfg.yaml in {folder}"
    print(f"ok: python train.py -Y in the container wrote its experiment to {folder}")


def check_gui_import(page, url: str, host: Path) -> None:
    csv = host / "upload.csv"
    rows = [f"Say {w}.,{w}" for w in ("red", "blue", "green", "cat", "dog", "sun")] * 5
    csv.write_text("instruction,output\n" + "\n".join(rows) + "\n")
    page.goto(url + "#dataset/import")
    wait_for_text(page, "Source", 30)
    page.set_input_files("input[type=file]", str(csv))
    page.get_by_role("button", name="Upload").click()
    wait_for_text(page, "Configure dataset", 60)
    page.get_by_label("Dataset name").fill("docker-upload")
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "Data validity check", 60)
    page.get_by_role("button", name="Continue").click()
    wait_for_text(page, "docker-upload", 60)
    screenshot(page, "docker_import")
    folder = host / "data" / "user" / "docker-upload"
    assert (folder / "cfg.yaml").is_file(), f"the imported dataset is not in {folder}"
    print(f"ok: the dataset imported in the GUI is in the mounted data/ ({folder})")


def active_experiments(host: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(host / "data" / "dbs" / "llmstudio.db")
    try:
        return conn.execute(
            "SELECT name, status FROM experiments WHERE status IN ('queued', 'running')"
        ).fetchall()
    finally:
        conn.close()


def check_docker_stop(container: str, host: Path) -> None:
    state, folder = docker(
        "exec", "-i", container, "python", "-", stdin=SUBMIT_LONG_EXPERIMENT
    ).split()
    assert state == "running", f"the long experiment did not start: {state}"
    status_file = host / folder.removeprefix("/workspace/") / "status.json"

    def training() -> bool:
        try:
            status = json.loads(status_file.read_text())
        except (OSError, ValueError):
            return False
        return status.get("state") == "running" and (status.get("progress") or 0) > 0

    wait_until("the long experiment did not start training", training, 180)
    assert active_experiments(host), "the store shows no running experiment before docker stop"
    start = time.monotonic()
    docker("stop", container, timeout=60)
    took = time.monotonic() - start
    exit_code = docker("inspect", "-f", "{{.State.ExitCode}}", container).strip()
    assert took < STOP_BOUND_S, f"docker stop took {took:.1f} s (bound {STOP_BOUND_S:.0f} s)"
    assert exit_code == "0", f"the container exited with {exit_code} (137: killed, not stopped)"
    left = active_experiments(host)
    assert not left, f"still active in the store after docker stop: {left}"
    state = json.loads(status_file.read_text())
    assert state["state"] == "stopped", f"status.json of the stopped experiment says {state}"
    print(f"ok: docker stop ended the app and the running experiment in {took:.1f} s; "
          "no experiment is left running in the store")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--container", required=True)
    parser.add_argument("--port", type=int, default=10101)
    parser.add_argument("--host-dir", type=Path, required=True)
    args = parser.parse_args()
    url = f"http://localhost:{args.port}/"
    with browser_page() as page:
        check_home_page(page, url)
        check_gui_import(page, url, args.host_dir)
    check_train_py(args.container, args.host_dir)
    check_docker_stop(args.container, args.host_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
