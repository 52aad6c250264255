"""View experiments: the live list (refreshed every ~2 s), its kebab menu and the stop and
delete actions. Its refresh loop (keep_fresh) also serves the one-experiment page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from h2o_wave import Q, on, ui

from llm_studio.config.problem_types import PROBLEM_TYPE_LABELS
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import load_config
from llm_studio.experiments.status import RunState
from llm_studio.experiments.summary import SummaryCache
from llm_studio.ui import layout, safe_text
from llm_studio.ui.state import app_runner, client_state

REFRESH_SECONDS = 2.0
T = TypeVar("T")

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


def tokens_per_s(value: float | None) -> str:
    """Throughput as a user reads it; "—" for a run from before training measured it."""
    return "—" if value is None else f"{value:,.0f}"


def _row(record, datasets: dict) -> ui.TableRow:
    summary = SUMMARIES.get(record.path)
    status = summary.status
    state = app_runner().state(record)
    metric = _metric_of(record.config_file or str(Path(record.path) / "cfg.yaml"))
    best = summary.best_of(metric)
    eta = ""
    if status and status.eta_seconds and state == RunState.RUNNING:
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
            tokens_per_s(summary.tokens_per_s),
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


def _column(name: str, label: str, width: int, **kwargs) -> ui.TableColumn:
    return ui.table_column(name=name, label=label, min_width=f"{width}px",
                           max_width=f"{width}px", **kwargs)  # fmt: skip


def _experiment_table(rows: list[ui.TableRow]) -> ui.Component:
    # Fixed widths that together fit next to the nav at 1600 px (Wave's default is 150 px a
    # column and Fluent widens them further, pushing ETA and Start time off-screen).
    columns = [
        _column("name", "Name", 150, cell_type=ui.markdown_table_cell_type(target="")),
        _column("actions", "", 32, cell_type=ui.menu_table_cell_type(name="row_commands",
                commands=[ui.command(name=name, label=label) for name, label in ROW_MENU])),
        _column("dataset", "Dataset", 100),
        _column("problem_type", "Problem type", 170),
        _column("metric", "Metric", 60),
        _column("best", "Best validation", 110),
        _column("status", "Status", 70),
        _column("progress", "Progress", 80, cell_type=ui.progress_table_cell_type()),
        _column("tokens_per_s", "Tokens/s", 70),
        _column("eta", "ETA", 70),
        _column("started", "Start time", 120),
    ]  # fmt: skip
    # Checkboxes always shown: the guide's Stop and Delete start from selecting rows.
    return ui.table(name="experiments_table", columns=columns, rows=rows, multiple=True,
                    checkbox_visibility="always", height="520px")  # fmt: skip


@on("#experiments")
async def experiments_route(q: Q) -> None:
    pending, q.client.experiments_note = q.client.experiments_note, None
    if pending and time.monotonic() - pending[1] < 10:
        await experiments_page(q, layout.message(pending[0], "success"))
        return
    await experiments_page(q)


async def experiments_page(q: Q, note: ui.Component | None = None) -> None:
    app_runner()  # created here, on the loop, once: worker threads only use it
    rows = await q.run(experiment_rows, client_state(q).store)  # reads every experiment folder
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
            "experiments": ui.form_card(box="main", items=[_experiment_table(rows)]),
        },
    )
    q.client.page_key = "experiments"
    store = client_state(q).store
    keep_fresh(q, "experiments", lambda: experiment_rows(store), lambda rows: _show_rows(q, rows))


def _show_rows(q: Q, rows: list[ui.TableRow]) -> None:
    q.page["experiments"].items[0].table.rows = rows


def _poll_then_read(read: Callable[[], T]) -> T:
    app_runner().poll()  # notices ended runs and starts queued ones before the page reads them
    return read()


def keep_fresh(q: Q, page_key: str, read: Callable[[], T], show: Callable[[T], None]) -> None:
    """A per-client task that re-renders the live part of a page every ~2 s while it is shown.

    `read` does the blocking part (the runner's poll, experiment folders, the store) in a worker
    thread, so other clients' events go on meanwhile; `show(result)` then puts the result on the
    page, on the event loop, unless the user has left the page in between."""
    task = q.client.refresh_task
    if task is not None and not task.done():
        task.cancel()
    app_runner()  # created on the loop, once: the worker threads only use it

    async def loop() -> None:
        while q.client.page_key == page_key:
            await asyncio.sleep(REFRESH_SECONDS)
            if q.client.page_key != page_key:
                break
            fresh = await q.run(_poll_then_read, read)
            if q.client.page_key != page_key:
                break
            show(fresh)
            await q.page.save()

    q.client.refresh_task = asyncio.ensure_future(loop())


@on("stop_experiments")
async def stop_experiments(q: Q) -> None:
    await _stop(q, [int(i) for i in (q.args.experiments_table or [])])


async def _stop(q: Q, ids: list[int]) -> None:
    if not ids:
        await experiments_page(q, layout.message("Select experiments first.", "warning"))
        return
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


NAMED_AT_MOST = 5  # the delete question names this many, then says how many more


def delete_question(store, ids: list[int]) -> str:
    """ "Delete a, b and c and their folders?": the user sees what goes before it goes."""
    names = [r.name for r in map(store.get_experiment, ids) if r is not None]
    names += [f"#{i}" for i in ids][len(names) :]  # ids gone meanwhile still counted
    shown = ", ".join(names[:NAMED_AT_MOST])
    if len(names) > NAMED_AT_MOST:
        shown += f" and {len(names) - NAMED_AT_MOST} more"
    noun = "experiment" if len(names) == 1 else "experiments"
    return f"Delete {noun} {shown} and {'its folder' if len(names) == 1 else 'their folders'}?"


def _confirm_delete(q: Q, ids: list[int]) -> None:
    q.client.delete_experiment_ids = ids
    q.page["meta"].dialog = ui.dialog(
        title="Delete experiments",
        name="delete_experiments_dialog",
        items=[
            ui.text(safe_text.plain(delete_question(client_state(q).store, ids))),
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
