"""Home: what is here (datasets, experiments, what runs) and what the machine has."""

from __future__ import annotations

import shutil

import psutil
from h2o_wave import Q, on, ui

from llm_studio.experiments.status import RunState
from llm_studio.paths import workdir
from llm_studio.ui import layout
from llm_studio.ui.state import client_state


def _gpus() -> list[str]:
    """GPU names from nvidia-smi when present; no torch import in the UI process."""
    if shutil.which("nvidia-smi") is None:
        return []
    import subprocess

    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=5,
    )
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


@on("#home")
async def home(q: Q) -> None:
    store = client_state(q).store
    datasets = store.list_datasets()
    experiments = store.list_experiments()
    running = sum(1 for e in experiments if _is_running(e))
    disk = shutil.disk_usage(workdir())
    memory = psutil.virtual_memory()
    gib = 1024**3
    gpus = _gpus()
    items = [
        ui.stat(label="Datasets", value=str(len(datasets)), icon="Database"),
        ui.stat(label="Experiments", value=str(len(experiments)), icon="TestBeakerSolid"),
        ui.stat(label="Running", value=str(running), icon="Play"),
        ui.stat(
            label="Disk free",
            value=f"{disk.free / gib:.1f} GiB of {disk.total / gib:.0f} GiB",
            icon="HardDrive",
        ),
        ui.stat(
            label="Memory free",
            value=f"{memory.available / gib:.1f} GiB of {memory.total / gib:.0f} GiB",
            icon="Memo",
        ),
        ui.stat(label="GPUs", value=", ".join(gpus) if gpus else "none (CPU)", icon="Processing"),
    ]
    layout.show(
        q,
        {
            "home_stats": ui.form_card(
                box="main",
                title="Home",
                items=[ui.stats(items=items, justify="between")],
            ),
            "home_help": ui.markdown_card(
                box="main",
                title="Getting started",
                content=(
                    "1. **Import dataset**: upload or point to a csv, parquet, json or zip file.\n"
                    "2. **View datasets**: check the samples and statistics.\n"
                    "3. **Create experiment**: pick a backbone and settings, then run it.\n"
                    "\nThe command line works on the same folders: `python train.py -Y cfg.yaml`."
                ),
            ),
        },
    )


def _is_running(experiment) -> bool:
    from llm_studio.experiments.folder import ExperimentFolder

    status = ExperimentFolder(experiment.path).current_status()
    return status is not None and status.state == RunState.RUNNING
