"""Download model / adapter / predictions / logs, and Push checkpoint to huggingface.

Zips are built and pushes run in a worker thread (`q.run`), so the page stays responsive.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from h2o_wave import Q, on, ui

from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.ui import layout, safe_text, secrets, wave_files
from llm_studio.ui.state import client_state

NOTIFICATION = "export_notification"
PROGRESS_EVERY = 0.5  # seconds between progress updates while a zip is built
DOWNLOADS = {
    "download_model": ("build_model_zip", "model"),
    "download_adapter": ("build_adapter_zip", "adapter"),
    "download_predictions": ("build_predictions_zip", "predictions"),
    "download_logs": ("build_logs_zip", "logs"),
}


NO_CHECKPOINT = "Available when the experiment has saved a checkpoint."


def availability(path: str) -> dict[str, str | None]:
    """Button name -> None when it has something to export, else why not (blocking: reads the
    folder with the export code's own checks, so a button is enabled exactly when it works)."""
    from llm_studio.export import package

    def why(check) -> str | None:
        try:
            check(path)
        except package.ExportError as exc:
            return str(exc)
        return None

    exp = ExperimentFolder(path)
    no_model = why(package.require_checkpoint) and NO_CHECKPOINT
    no_adapter = no_model or why(package.require_adapter)
    return {
        "download_model": no_model,
        "download_adapter": no_adapter,
        "download_predictions": None
        if exp.predictions_csv.is_file()
        else "Available once a validation has run.",
        "download_logs": None if exp.cfg_yaml.is_file() else "No experiment files yet.",
        "push_dialog": no_model,
    }


def export_buttons(unavailable: dict[str, str | None] | None = None) -> ui.Component:
    """The export buttons; those in `unavailable` with a reason are disabled, the reason their
    tooltip."""
    unavailable = unavailable or {}
    labels = (
        ("download_model", "Download model"),
        ("download_adapter", "Download adapter"),
        ("download_predictions", "Download predictions"),
        ("download_logs", "Download logs"),
        ("push_dialog", "Push checkpoint to huggingface"),
    )
    return ui.buttons(
        [
            ui.button(
                name=name,
                label=label,
                disabled=bool(unavailable.get(name)),
                tooltip=unavailable.get(name) or None,
            )
            for name, label in labels
        ]
    )


def _record(q: Q):
    return client_state(q).store.get_experiment(q.client.experiment_id)


def _note(q: Q, component: ui.Component) -> None:
    q.page["experiment_note"] = ui.form_card(box="main", items=[component])
    shown = q.client[layout.MAIN_CARDS]
    if shown is None:
        q.client[layout.MAIN_CARDS] = ["experiment_note"]
    elif "experiment_note" not in shown:  # so the next page removes it
        # In place: the Chat tab keeps its model while this very list is the client's.
        shown.append("experiment_note")


async def _download(q: Q, builder_name: str, kind: str) -> None:
    """Build the zip off the event loop with its progress in a notification at the top of the
    window, then start the browser's download of it: one click, nothing else to find."""
    from llm_studio.export import package

    record = _record(q)
    preparing = f"Preparing the {kind} download"
    _notify(q, f"{preparing}…", timeout=-1)
    await q.page.save()
    done = [0.0]
    out_dir = Path(tempfile.mkdtemp(prefix="llmstudio-download-"))
    try:
        build = getattr(package, builder_name)
        building = asyncio.ensure_future(
            q.run(build, Path(record.path), out_dir, lambda f: done.__setitem__(0, f))
        )
        while not building.done():
            await asyncio.wait({building}, timeout=PROGRESS_EVERY)
            if not building.done() and _on_page(q, record.id):
                _notify(q, f"{preparing}: {done[0]:.0%}", timeout=-1)
                await q.page.save()
        archive = building.result()
        size = archive.stat().st_size
        url = await wave_files.serve_download(q, (record.id, builder_name), str(archive))
    except (package.ExportError, OSError) as exc:
        if _on_page(q, record.id):  # the user left meanwhile: no error on another page
            # Stays until closed (its ✕) or the user leaves the experiment's page.
            _notify(q, f"The {kind} download failed: {exc}", "error", timeout=-1)
        else:
            layout.clear_notification(q)
        return
    finally:
        for leftover in out_dir.glob("*"):
            leftover.unlink(missing_ok=True)
        out_dir.rmdir()
    name = Path(archive).name
    _notify(q, f"Downloading {name} ({size / 1e6:.1f} MB).", "success")
    start_download(q, url, name)


def _on_page(q: Q, experiment_id: int) -> bool:
    """Whether the user is still on this experiment's page (its page key is set while shown)."""
    return (q.client.page_key or "").startswith(f"experiment/{experiment_id}/")


def _notify(q: Q, text: str, kind: str = "info", timeout: int = 10) -> None:
    """A notification at the top of the window; layout.show clears it when the page changes,
    so it never follows the user to another page."""
    q.page["meta"].notification_bar = ui.notification_bar(
        text=safe_text.plain(text), type=kind, timeout=timeout, name=NOTIFICATION
    )
    q.client[layout.NOTIFICATION_SHOWN] = True


def start_download(q: Q, url: str, name: str) -> None:
    """Make the browser download `url` (a file uploaded to Wave) as `name`, as a click on a
    download link would."""
    q.page["meta"].script = ui.inline_script(
        "(function(){const a=document.createElement('a');"
        f"a.href={json.dumps(url)};a.download={json.dumps(name)};"
        "document.body.appendChild(a);a.click();a.remove();})();"
    )


@on("download_model")
async def download_model(q: Q) -> None:
    await _download(q, *DOWNLOADS["download_model"])


@on("download_adapter")
async def download_adapter(q: Q) -> None:
    await _download(q, *DOWNLOADS["download_adapter"])


@on("download_predictions")
async def download_predictions(q: Q) -> None:
    await _download(q, *DOWNLOADS["download_predictions"])


@on("download_logs")
async def download_logs(q: Q) -> None:
    await _download(q, *DOWNLOADS["download_logs"])


@on("download_config")
async def download_config(q: Q) -> None:
    record = _record(q)
    config = record.config_file or str(Path(record.path) / "cfg.yaml")
    url = await wave_files.serve_download(q, (record.id, "config"), config)
    _notify(q, "Downloading cfg.yaml.", "success")
    start_download(q, url, "cfg.yaml")


@on("push_dialog")
async def push_dialog(q: Q) -> None:
    record = _record(q)
    q.page["meta"].dialog = ui.dialog(
        title="Push checkpoint to huggingface",
        name="push_dialog_box",
        items=[
            ui.textbox(name="hub_account", label="Account name (empty: the token's user)"),
            ui.textbox(name="hub_model_name", label="Model name", value=record.name),
            ui.textbox(
                name="hub_token",
                label="Hugging Face API key (empty: the one saved in Settings)",
                password=True,
            ),
            ui.buttons(
                [
                    ui.button(name="push_confirm", label="Export", primary=True),
                    ui.button(name="push_cancel", label="Cancel"),
                ]
            ),
        ],
    )


@on("push_cancel")
async def push_cancel(q: Q) -> None:
    q.page["meta"].dialog = None


@on("push_confirm")
async def push_confirm(q: Q) -> None:
    from llm_studio.export.hub import push_to_hub
    from llm_studio.export.package import ExportError

    state = client_state(q)
    q.page["meta"].dialog = None
    token = q.args.hub_token or secrets.load(
        secrets.current_handler(state.store), state.session_secrets
    ).get("HF_TOKEN", "")
    record = _record(q)
    _note(q, ui.progress("Pushing to the Hugging Face Hub"))
    await q.page.save()
    try:
        url = await q.run(
            push_to_hub,
            Path(record.path),
            q.args.hub_model_name or record.name,
            token,
            q.args.hub_account or None,
        )
    except ExportError as exc:
        _note(q, layout.message(str(exc), "error"))
        return
    _note(q, layout.message(f"Pushed to {url}", "success"))
