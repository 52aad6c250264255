"""View experiments: the live list (refreshed every ~2 s), its kebab menu and the stop and
delete actions. Its refresh loop (keep_fresh) also serves the one-experiment page."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from h2o_wave import Q, on, ui

from llm_studio.config.problem_types import PROBLEM_TYPE_LABELS
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import load_config
from llm_studio.experiments.summary import SummaryCache
from llm_studio.ui import layout, safe_text
from llm_studio.ui.state import app_runner, client_state

REFRESH_SECONDS = 2.0

SUMMARIES = SummaryCache()
_METRICS: dict[str, str] = {}  # config file -> metric; a launched experiment's config is fixed


def _metric_of(config_file: str) -> str:
    if config_file not in _METRICS:
        try:
            cfg, _ = load_config(config_file)
            _METRICS[config_file] = cfg.prediction.metric
        except (ConfigError, OSError):
            return ""
    return _METRICS[config_file]


def _row(record, datasets: dict) -> ui.TableRow:
    summary = SUMMARIES.get(record.path)
    status = summary.status
    state = app_runner().state(record)
    metric = _metric_of(record.config_file or str(Path(record.path) / "cfg.yaml"))
    best = summary.best_of(metric)
    eta = ""
    if status and status.eta_seconds and state == "running":
        eta = time.strftime("%H:%M:%S", time.gmtime(status.eta_seconds))
    return ui.table_row(
        name=str(record.id),
        cells=[
            safe_text.link(record.name, f"experiment/{record.id}"),
            "",  # the row's kebab menu, next to the name so it is in view without scrolling
            datasets.get(record.dataset_id, ""),
            PROBLEM_TYPE_LABELS.get(record.problem_type, record.problem_type),
            metric,
            "" if best is None else f"{best:.4f}",
            state,
            str(status.progress if status else 0.0),
            eta,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created_at or 0)),
        ],
    )


# Each row's kebab menu: Wave sends q.args.<command> = the row's name (the experiment id).
# New and Rename are handled where they act: experiment_create and experiment_view.
ROW_MENU = (
    ("row_new_experiment", "New experiment"),
    ("row_rename_experiment", "Rename experiment"),
    ("row_stop_experiment", "Stop experiment"),
    ("row_delete_experiment", "Delete experiment"),
)


def experiment_rows(store) -> list[ui.TableRow]:
    datasets = {d.id: d.name for d in store.list_datasets()}
    return [_row(r, datasets) for r in reversed(store.list_experiments())]


def _experiment_table(q: Q) -> ui.Component:
    store = client_state(q).store
    columns = [
        ui.table_column(name="name", label="Name", min_width="160px",
                        cell_type=ui.markdown_table_cell_type(target="")),
        ui.table_column(name="actions", label="", min_width="40px",
                        cell_type=ui.menu_table_cell_type(name="row_commands", commands=[
                            ui.command(name=name, label=label) for name, label in ROW_MENU])),
        ui.table_column(name="dataset", label="Dataset"),
        ui.table_column(name="problem_type", label="Problem type", min_width="180px"),
        ui.table_column(name="metric", label="Metric"),
        ui.table_column(name="best", label="Best validation"),
        ui.table_column(name="status", label="Status"),
        ui.table_column(name="progress", label="Progress",
                        cell_type=ui.progress_table_cell_type()),
        ui.table_column(name="eta", label="ETA"),
        ui.table_column(name="started", label="Start time"),
    ]  # fmt: skip
    rows = experiment_rows(store)
    return ui.table(name="experiments_table", columns=columns, rows=rows, multiple=True,
                    height="520px")  # fmt: skip


@on("#experiments")
async def experiments_route(q: Q) -> None:
    pending, q.client.experiments_note = q.client.experiments_note, None
    if pending and time.monotonic() - pending[1] < 10:
        await experiments_page(q, layout.message(pending[0], "success"))
        return
    await experiments_page(q)


async def experiments_page(q: Q, note: ui.Component | None = None) -> None:
    actions: list = [note] if note else []
    actions.append(
        ui.buttons(
            [
                ui.button(name="#experiment/start", label="New experiment", primary=True),
                ui.button(name="#experiments/compare", label="Compare experiments"),
                ui.button(name="stop_experiments", label="Stop experiments"),
                ui.button(name="delete_experiments", label="Delete experiments"),
            ]
        )
    )
    layout.show(
        q,
        {
            "experiments_actions": ui.form_card(
                box="main", title="View experiments", items=actions
            ),
            # The table alone in its card: the refresh replaces its rows, keeping the selection.
            "experiments": ui.form_card(box="main", items=[_experiment_table(q)]),
        },
    )
    q.client.page_key = "experiments"
    keep_fresh(q, "experiments", lambda: _refresh_list(q))


def _refresh_list(q: Q) -> None:
    q.page["experiments"].items[0].table.rows = _experiment_table(q).table.rows


def keep_fresh(q: Q, page_key: str, refresh) -> None:
    """A per-client task that re-renders the live part of a page every ~2 s while it is shown."""
    task = q.client.refresh_task
    if task is not None and not task.done():
        task.cancel()

    async def loop() -> None:
        while q.client.page_key == page_key:
            await asyncio.sleep(REFRESH_SECONDS)
            if q.client.page_key != page_key:
                break
            app_runner().poll()
            refresh()
            await q.page.save()

    q.client.refresh_task = asyncio.ensure_future(loop())


@on("stop_experiments")
async def stop_experiments(q: Q) -> None:
    await _stop(q, [int(i) for i in (q.args.experiments_table or [])])


async def _stop(q: Q, ids: list[int]) -> None:
    for experiment_id in ids:
        await q.run(app_runner().stop, experiment_id)
    await experiments_page(q, layout.message(f"Stopping {len(ids)} experiment(s).", "info"))


@on("delete_experiments")
async def delete_experiments(q: Q) -> None:
    ids = [int(i) for i in (q.args.experiments_table or [])]
    if not ids:
        await experiments_page(q, layout.message("Select experiments first.", "warning"))
        return
    _confirm_delete(q, ids)


def _confirm_delete(q: Q, ids: list[int]) -> None:
    q.client.delete_experiment_ids = ids
    q.page["meta"].dialog = ui.dialog(
        title="Delete experiments",
        name="delete_experiments_dialog",
        items=[
            ui.text(f"Delete {len(ids)} experiment(s) and their folders?"),
            ui.buttons(
                [
                    ui.button(name="delete_experiments_confirm", label="Delete", primary=True),
                    ui.button(name="delete_experiments_cancel", label="Cancel"),
                ]
            ),
        ],
    )


@on("delete_experiments_cancel")
async def delete_experiments_cancel(q: Q) -> None:
    q.page["meta"].dialog = None


@on("delete_experiments_confirm")
async def delete_experiments_confirm(q: Q) -> None:
    q.page["meta"].dialog = None
    ids = q.client.delete_experiment_ids or []
    await q.run(app_runner().delete, ids)
    await experiments_page(q, layout.message(f"Deleted {len(ids)} experiment(s).", "success"))


@on("row_stop_experiment")
async def row_stop_experiment(q: Q) -> None:
    await _stop(q, [int(q.args.row_stop_experiment)])


@on("row_delete_experiment")
async def row_delete_experiment(q: Q) -> None:
    _confirm_delete(q, [int(q.args.row_delete_experiment)])
