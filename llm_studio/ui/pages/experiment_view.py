"""One experiment: its page with tabs (charts, summary, insights, logs, config; chat and export
come from their own modules) and renaming it, from this page or a row of View experiments."""

from __future__ import annotations

import json
import time
from pathlib import Path

from h2o_wave import Q, on, ui

from llm_studio.config.problem_types import PROBLEM_TYPE_LABELS
from llm_studio.config.yaml_io import load_config
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.experiments.status import RunState
from llm_studio.store import Store, StoreError
from llm_studio.ui import layout, safe_text
from llm_studio.ui.pages import experiments
from llm_studio.ui.pages.experiment_charts import chart_cards
from llm_studio.ui.pages.experiment_export import availability, export_buttons
from llm_studio.ui.pages.experiments import experiments_page, keep_fresh, tokens_per_s
from llm_studio.ui.state import app_runner, client_state

TABS = (
    ("charts", "Charts"),
    ("summary", "Summary"),
    ("train_insights", "Train data insights"),
    ("prediction_insights", "Validation prediction insights"),
    ("logs", "Logs"),
    ("config", "Config"),
    ("chat", "Chat"),
)
LIVE_TABS = ("charts", "summary", "logs")  # re-rendered while shown, as the run goes on
STOPPABLE = ("queued", "running")


@on("#experiment/{experiment_id:int}")
async def experiment_route(q: Q, experiment_id: int) -> None:
    await experiment_page(q, experiment_id)


async def experiment_page(q: Q, experiment_id: int, tab: str = "charts") -> None:
    store = client_state(q).store
    record = store.get_experiment(experiment_id)
    if record is None:
        await experiments_page(q, layout.message(f"No experiment {experiment_id}.", "error"))
        return
    q.client.experiment_id = experiment_id
    q.client.experiment_tab = tab
    app_runner()  # created on the loop, once: worker threads only use it
    title, tab_cards = await q.run(_tab_content, record, tab)  # reads the experiment's folder
    header_items = await q.run(_header_items, record, tab)
    cards = {"experiment": ui.form_card(box="main", title=title, items=header_items)}
    cards.update(tab_cards)
    layout.show(q, cards)
    if tab in TAB_OPENED:
        TAB_OPENED[tab](q)
    q.client.page_key = f"experiment/{experiment_id}/{tab}"
    if tab in LIVE_TABS:
        q.client.experiment_seen = await q.run(_folder_state, record)
        keep_fresh(
            q,
            q.client.page_key,
            lambda: _read_tab(record, tab, q.client.experiment_seen),
            lambda fresh: _show_tab(q, fresh),
        )


def _header_items(record, tab: str) -> list[ui.Component]:
    """Tabs and buttons (blocking: which exports there is something for, and whether the run
    can be stopped, come from the folder and the runner)."""
    actions = [
        ui.button(name="new_from_experiment", label="New experiment"),
        ui.button(name="rename_dialog", label="Rename experiment"),
    ]
    if app_runner().state(record) in STOPPABLE:
        actions.insert(0, ui.button(name="stop_this_experiment", label="Stop experiment"))
    return [
        ui.tabs(
            name="experiment_tab",
            value=tab,
            items=[ui.tab(name=n, label=label) for n, label in TABS],
        ),
        export_buttons(availability(record.path)),
        ui.buttons(actions),
    ]


def _tab_content(record, tab: str) -> tuple[str, dict]:
    """The header's title and the tab's cards (blocking: reads the experiment's files)."""
    return _title(record), TAB_CARDS[tab](record)


def _title(record) -> str:
    return f"Experiment {record.name} ({app_runner().state(record)})"


def _folder_state(record) -> tuple:
    """What a live tab shows changes only when one of these does."""
    folder = ExperimentFolder(record.path)
    sizes: list[tuple[float, int] | None] = []
    for path in (folder.status_file, folder.charts_file, folder.logs):
        try:
            stat = path.stat()
            sizes.append((stat.st_mtime, stat.st_size))
        except FileNotFoundError:
            sizes.append(None)
    return app_runner().state(record), *sizes


def _read_tab(record, tab: str, seen_before: tuple) -> tuple | None:
    """Follow the run (in a worker thread): (folder state, title, tab cards), or None while
    nothing changed, so nothing is sent."""
    seen = _folder_state(record)
    ticking = tab == "summary" and seen[0] == RunState.RUNNING  # its run time goes on
    if seen == seen_before and not ticking:
        return None
    return (seen, *_tab_content(record, tab), _header_items(record, tab))


def _show_tab(q: Q, fresh: tuple | None) -> None:
    """The header's state and the tab's cards, those it no longer has removed (e.g. "No chart
    points yet." once the charts come)."""
    if fresh is None:
        return
    q.client.experiment_seen, q.page["experiment"].title, cards, items = fresh
    q.page["experiment"].items = items  # Stop goes and the downloads come as the run ends
    layout.update(q, cards, keep=("experiment",))


@on("stop_this_experiment")
async def stop_this_experiment(q: Q) -> None:
    """Stop from the experiment's own page, as the list's Stop does; the page then shows it."""
    await q.run(app_runner().stop, q.client.experiment_id)
    await experiment_page(q, q.client.experiment_id, q.client.experiment_tab or "charts")


@on("experiment_tab")
async def change_experiment_tab(q: Q) -> None:
    await experiment_page(q, q.client.experiment_id, q.args.experiment_tab)


def _charts(record) -> dict:
    return chart_cards(record.path)


def _summary(record) -> dict:
    """The guide's Summary (name, dataset, problem type, seed, GPUs, loss, metric and its best
    validation value), with the run's throughput and time."""
    status = ExperimentFolder(record.path).current_status()
    summary = experiments.SUMMARIES.get(record.path)
    cfg, _ = load_config(record.config_file)
    dataset = Store().get_dataset(record.dataset_id)
    metric = cfg.prediction.metric if hasattr(cfg, "prediction") else ""
    best = summary.best_of(metric)
    gpus = getattr(cfg.environment, "gpus", [])
    rows = [
        ("Name", record.name),
        ("Dataset", dataset.name if dataset else "—"),
        ("Problem type", PROBLEM_TYPE_LABELS.get(record.problem_type, record.problem_type)),
        ("LLM backbone", cfg.llm_backbone),
        ("Seed", cfg.environment.seed),
        ("GPUs", ", ".join(map(str, gpus)) if gpus else "none (CPU)"),
        ("Loss function", getattr(cfg.training, "loss_function", "—")),
        ("Metric", metric or "—"),
        (f"Best validation {metric}".rstrip(), "—" if best is None else f"{best:.4f}"),
        ("Tokens/s", tokens_per_s(summary.tokens_per_s)),
        ("Run time", _run_time(status)),
        ("Status", app_runner().state(record)),
        ("Progress", f"{(status.progress if status else 0) * 100:.0f}%"),
        ("Error", (status.error or "") if status else ""),
        ("Folder", record.path),
    ]
    table = safe_text.table(["", ""], [list(row) for row in rows])
    return {"experiment_body": ui.form_card(box="main", items=[ui.text(table)])}


def _run_time(status) -> str:
    """h:mm:ss from the start to the last status write (to now while it runs)."""
    if status is None or status.started_at is None:
        return "—"
    end = time.time() if status.state == RunState.RUNNING else status.updated_at
    hours, seconds = divmod(int(max(0.0, end - status.started_at)), 3600)
    return f"{hours}:{seconds // 60:02d}:{seconds % 60:02d}"


def _train_insights(record) -> dict:
    path = ExperimentFolder(record.path).train_insights
    if not path.is_file():
        return {"experiment_body": ui.form_card(box="main", items=[ui.text("Not written yet.")])}
    insights = json.loads(path.read_text())
    items = []
    for number, pieces in enumerate(insights["samples"][:5], 1):
        text = "".join(
            f"<strong>{safe_text.escape(p['text'])}</strong>"
            if p["kind"] == "trained"
            else safe_text.escape(p["text"])
            for p in pieces
            if p["kind"] != "padding"
        )
        items += [ui.text_l(f"Sample {number}"), ui.text(safe_text.block(text)), ui.separator()]
    items.insert(0, ui.text("Bold text is trained on; the rest is masked from the loss."))
    return {"experiment_body": ui.form_card(box="main", items=items)}


def _prediction_insights(record) -> dict:
    path = ExperimentFolder(record.path).prediction_insights
    if not path.is_file():
        return {"experiment_body": ui.form_card(box="main", items=[ui.text("No validation yet.")])}
    insights = json.loads(path.read_text())
    items = []
    for kind in ("random", "best", "worst"):
        items.append(ui.text_l(kind.capitalize()))
        for row in insights[kind]:
            cells = " | ".join(
                f"<strong>{safe_text.escape(k)}:</strong> {safe_text.escape(str(v)[:500])}"
                for k, v in row.items()
            )
            items += [ui.text(safe_text.block(cells)), ui.separator()]
    return {"experiment_body": ui.form_card(box="main", items=items)}


def _logs(record) -> dict:
    path = ExperimentFolder(record.path).logs
    text = path.read_text(errors="replace")[-20000:] if path.is_file() else ""
    return {"experiment_body": ui.form_card(box="main", items=[ui.text(f"```\n{text}\n```")])}


def _config(record) -> dict:
    text = Path(record.config_file).read_text() if Path(record.config_file).is_file() else ""
    items = [
        ui.buttons([ui.button(name="download_config", label="Download config")]),
        ui.text(f"```yaml\n{text}\n```"),
    ]
    return {"experiment_body": ui.form_card(box="main", items=items)}


def _chat_placeholder(record) -> dict:
    return {"experiment_body": ui.form_card(box="main", items=[ui.text("Chat is loading…")])}


# Tabs name -> cards; other page modules register theirs here (e.g. the chat tab).
TAB_CARDS = {
    "chat": _chat_placeholder,
    "charts": _charts,
    "summary": _summary,
    "train_insights": _train_insights,
    "prediction_insights": _prediction_insights,
    "logs": _logs,
    "config": _config,
}


# Tab name -> what to start once it is shown (e.g. the chat tab loads its model).
TAB_OPENED: dict = {}


# --- rename ---


@on("rename_dialog")
async def rename_dialog(q: Q) -> None:
    q.client.rename_from_list = False
    _rename_dialog(q, q.client.experiment_id)


def _rename_dialog(q: Q, experiment_id: int) -> None:
    q.client.rename_experiment_id = experiment_id
    record = client_state(q).store.get_experiment(experiment_id)
    assert record is not None  # renamed from its own page
    q.page["meta"].dialog = ui.dialog(
        title="Rename experiment",
        name="rename_box",
        items=[
            ui.textbox(name="new_experiment_name", label="New name", value=record.name),
            ui.buttons(
                [
                    ui.button(name="rename_confirm", label="Rename", primary=True),
                    ui.button(name="rename_cancel", label="Cancel"),
                ]
            ),
        ],
    )


@on("rename_cancel")
async def rename_cancel(q: Q) -> None:
    q.page["meta"].dialog = None


@on("rename_confirm")
async def rename_confirm(q: Q) -> None:
    from llm_studio.runner import RunnerError, experiments_service

    q.page["meta"].dialog = None
    new_name = q.args.new_experiment_name or ""
    try:
        renamed = await q.run(
            experiments_service.rename, app_runner(), q.client.rename_experiment_id, new_name
        )
    except (RunnerError, StoreError, OSError) as exc:
        await experiments_page(q, layout.message(str(exc), "error"))
        return
    experiments.SUMMARIES.forget(renamed.before.path)
    if q.client.rename_from_list:
        await experiments_page(q, layout.message(f"Renamed to {renamed.after.name}.", "success"))
    else:
        await experiment_page(q, renamed.after.id)


@on("row_rename_experiment")
async def row_rename_experiment(q: Q) -> None:
    experiment_id = int(q.args.row_rename_experiment)
    if client_state(q).store.get_experiment(experiment_id) is None:
        await experiments_page(q, layout.message(f"No experiment {experiment_id}.", "error"))
        return
    q.client.rename_from_list = True
    _rename_dialog(q, experiment_id)
