"""Create experiment and View experiments: the form derived from the settings declarations,
the runner that starts experiments, the live list and each experiment's tabs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from h2o_wave import Q, data, on, ui
from h2o_wave.core import expando_to_dict

from llm_studio.config.checks import check_config
from llm_studio.config.grid import MAX_COMBINATIONS, check_combinations, expand_grid, parse_grid
from llm_studio.config.problem_types import PROBLEM_TYPE_LABELS
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import load_config, save_config
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.experiments.summary import SummaryCache
from llm_studio.models.offline_backbone import DEFAULT_BACKBONE
from llm_studio.store import ExperimentRecord, StoreError, experiment_dir
from llm_studio.ui import layout, secrets
from llm_studio.ui.pages.experiment_export import export_buttons
from llm_studio.ui.settings_form import apply_form, read_grid, settings_items
from llm_studio.ui.state import app_runner, client_state

BACKBONES = (
    DEFAULT_BACKBONE,
    "HuggingFaceTB/SmolLM2-360M-Instruct",
    "h2oai/h2o-danube3-500m-chat",
    "meta-llama/Llama-3.2-1B-Instruct",
    "Qwen/Qwen2.5-0.5B-Instruct",
)
TABS = (
    ("charts", "Charts"),
    ("summary", "Summary"),
    ("train_insights", "Train data insights"),
    ("prediction_insights", "Validation prediction insights"),
    ("logs", "Logs"),
    ("config", "Config"),
    ("chat", "Chat"),
)
REFRESH_SECONDS = 2.0


# --- Create experiment ---


@on("#experiment/start")
async def start_page(q: Q) -> None:
    datasets = client_state(q).store.list_datasets()
    if not datasets:
        layout.show(
            q,
            {"experiment": ui.form_card(box="main", title="Create experiment", items=[
                layout.message("Import a dataset first.", "warning")])},
        )  # fmt: skip
        return
    await open_form_for_dataset(q, datasets[0].id)


async def open_form_for_dataset(q: Q, dataset_id: int) -> None:
    """The Create experiment form with the dataset's settings and the default backbone."""
    state = client_state(q)
    dataset = state.store.get_dataset(dataset_id)
    cfg, _ = load_config(dataset.config_file)
    cfg.experiment_name = _free_name(state.store, dataset.name)
    cfg.llm_backbone = DEFAULT_BACKBONE
    cfg.environment.gpus = []
    state.wizard.clear()
    state.wizard.update(experiment_cfg=cfg, dataset_id=dataset.id)
    _experiment_form(q)


def _free_name(store, base: str) -> str:
    for n in range(1, 1000):
        name = f"{base}-{n}"
        if store.get_experiment_by_name(name) is None:
            return name
    return f"{base}-{int(time.time())}"


def _experiment_form(q: Q, note: ui.Component | None = None, warnings: list[str] | None = None):
    state = client_state(q)
    cfg = state.wizard["experiment_cfg"]
    grid = state.wizard.get("grid")  # None: a single experiment; else key -> values to try
    datasets = state.store.list_datasets()
    items: list = [note] if note else []
    items += [
        ui.text_l("General"),
        ui.dropdown(
            name="experiment_dataset",
            label="Dataset",
            value=str(state.wizard["dataset_id"]),
            choices=[ui.choice(str(d.id), d.name) for d in datasets],
            trigger=True,
        ),
        ui.text(f"**Problem type:** {PROBLEM_TYPE_LABELS[cfg.problem_type]}"),
        ui.file_upload(name="experiment_yaml", label="Import config from YAML",
                       file_extensions=["yaml", "yml"], compact=True),
        ui.textbox(name="experiment_name", label="Experiment name", value=cfg.experiment_name),
        ui.toggle(name="grid_search", label="Grid search", value=grid is not None, trigger=True,
                  tooltip="Run one experiment per combination of the values entered per setting."),
    ]  # fmt: skip
    if grid is not None:
        items.append(ui.text(
            "Enter the values to try under each setting; a setting left empty keeps its single "
            f"value. One experiment per combination (at most {MAX_COMBINATIONS}), named after "
            "the experiment name and its values."
        ))  # fmt: skip
    items += [
        ui.combobox(name="llm_backbone", label="LLM backbone", value=cfg.llm_backbone,
                    choices=list(BACKBONES),
                    tooltip="Pick one, or type a Hugging Face name or a local folder."),
    ]  # fmt: skip
    items += settings_items(cfg, grid)
    buttons = [ui.button(name="run_experiment", label="Run experiment", primary=True)]
    if warnings:
        items.append(layout.message("; ".join(warnings), "warning"))
        buttons = [ui.button(name="run_anyway", label="Run anyway", primary=True)]
    items.append(ui.buttons(buttons))
    layout.show(q, {"experiment": ui.form_card(box="main", title="Create experiment", items=items)})


def _read_form(q: Q) -> None:
    state = client_state(q)
    cfg = state.wizard["experiment_cfg"]
    if q.args.experiment_name is not None:
        cfg.experiment_name = q.args.experiment_name
    if q.args.llm_backbone:
        cfg.llm_backbone = q.args.llm_backbone
    args = expando_to_dict(q.args)
    if state.wizard.get("grid") is not None:  # first: a bad setting must not lose typed values
        state.wizard["grid"] = read_grid(args)
    apply_form(cfg, args)


@on("grid_search")
async def grid_search_toggled(q: Q) -> None:
    """Grid search on shows a values widget under each setting a grid can vary; off hides them."""
    state = client_state(q)
    try:
        _read_form(q)
    except ConfigError as exc:
        _experiment_form(q, layout.message(str(exc), "error"))
        return
    state.wizard["grid"] = (state.wizard.get("grid") or {}) if q.args.grid_search else None
    _experiment_form(q)


@on("cfg__{key}")
async def setting_changed(q: Q, key: str) -> None:
    """A setting others depend on changed: re-render, showing or hiding its dependents."""
    try:
        _read_form(q)
    except ConfigError as exc:
        _experiment_form(q, layout.message(str(exc), "error"))
        return
    _experiment_form(q)


@on("new_from_experiment")
async def new_from_experiment(q: Q) -> None:
    """A new experiment pre-filled with this one's settings (and its dataset)."""
    await _new_from(q, q.client.experiment_id)


async def _new_from(q: Q, experiment_id: int) -> None:
    state = client_state(q)
    record = state.store.get_experiment(experiment_id)
    if record is None:  # deleted meanwhile (e.g. from another tab)
        await experiments_page(q, layout.message(f"No experiment {experiment_id}.", "error"))
        return
    cfg, _ = load_config(record.config_file)
    cfg.experiment_name = _free_name(state.store, record.name)
    state.wizard.clear()
    state.wizard.update(experiment_cfg=cfg, dataset_id=record.dataset_id)
    q.client.page_key = "experiment/start"
    _experiment_form(q, layout.message(f"Settings copied from {record.name}.", "info"))


@on("rename_dialog")
async def rename_dialog(q: Q) -> None:
    q.client.rename_from_list = False
    _rename_dialog(q, q.client.experiment_id)


def _rename_dialog(q: Q, experiment_id: int) -> None:
    q.client.rename_experiment_id = experiment_id
    record = client_state(q).store.get_experiment(experiment_id)
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
    from llm_studio.runner import RunnerError

    q.page["meta"].dialog = None
    record = client_state(q).store.get_experiment(q.client.rename_experiment_id)
    try:
        await q.run(app_runner().rename, record.id, q.args.new_experiment_name or "")
    except (RunnerError, StoreError, OSError) as exc:
        await experiments_page(q, layout.message(str(exc), "error"))
        return
    SUMMARIES.forget(record.path)
    if q.client.rename_from_list:
        renamed = client_state(q).store.get_experiment(record.id)
        await experiments_page(q, layout.message(f"Renamed to {renamed.name}.", "success"))
    else:
        await experiment_page(q, record.id)


@on("experiment_dataset")
async def change_dataset(q: Q) -> None:
    state = client_state(q)
    record = state.store.get_dataset(int(q.args.experiment_dataset))
    cfg, _ = load_config(record.config_file)
    cfg.experiment_name = _free_name(state.store, record.name)
    cfg.environment.gpus = []
    state.wizard.update(experiment_cfg=cfg, dataset_id=record.id)
    _experiment_form(q)


@on("experiment_yaml")
async def import_yaml(q: Q) -> None:
    state = client_state(q)
    local = await q.site.download(q.args.experiment_yaml[0], str(state.store.db_path.parent))
    try:
        imported, warnings = load_config(local)
    except ConfigError as exc:
        _experiment_form(q, layout.message(str(exc), "error"))
        return
    finally:
        Path(local).unlink(missing_ok=True)
    current = state.wizard["experiment_cfg"]
    # The dataset's files stay those of the chosen dataset.
    imported.dataset.train_dataframe = current.dataset.train_dataframe
    imported.dataset.validation_dataframe = current.dataset.validation_dataframe
    state.wizard["experiment_cfg"] = imported
    note = "Imported the YAML." + (f" {'; '.join(warnings)}" if warnings else "")
    _experiment_form(q, layout.message(note, "info"))


@on("run_experiment")
async def run_experiment(q: Q) -> None:
    await _run(q, proceed_on_warnings=False)


@on("run_anyway")
async def run_anyway(q: Q) -> None:
    await _run(q, proceed_on_warnings=True)


async def _run(q: Q, proceed_on_warnings: bool) -> None:
    state = client_state(q)
    if state.wizard.get("grid") is not None:
        await _run_grid(q, proceed_on_warnings)
        return
    cfg = state.wizard["experiment_cfg"]
    try:
        _read_form(q)
        folder = experiment_dir(cfg.experiment_name)
        if state.store.get_experiment_by_name(cfg.experiment_name) or folder.exists():
            raise ConfigError(f"experiment_name: {cfg.experiment_name!r} is taken")
        cfg.output_directory = str(folder)
        result = check_config(cfg, gpu_count=app_runner().gpu_count)
        if result.errors:
            raise ConfigError("; ".join(result.errors))
    except (ConfigError, StoreError) as exc:
        _experiment_form(q, layout.message(str(exc), "error"))
        return
    if result.warnings and not proceed_on_warnings:
        _experiment_form(q, warnings=result.warnings)
        return
    await _submit(q, cfg, folder)
    q.args["#"] = "experiments"
    await experiments_page(q)


async def _run_grid(q: Q, proceed_on_warnings: bool) -> None:
    """Check every combination like a single run, then submit them all: the runner queues them."""
    state = client_state(q)
    cfg = state.wizard["experiment_cfg"]
    try:
        _read_form(q)
        experiment_dir(cfg.experiment_name)  # the base name must be a valid name already
        configs = expand_grid(cfg, parse_grid(cfg, state.wizard["grid"]))
        folders = []
        for one in configs:
            folder = experiment_dir(one.experiment_name)
            if state.store.get_experiment_by_name(one.experiment_name) or folder.exists():
                raise ConfigError(f"experiment_name: {one.experiment_name!r} is taken")
            one.output_directory = str(folder)
            folders.append(folder)
        combined = check_combinations(configs, gpu_count=app_runner().gpu_count)
        if combined.errors:
            raise ConfigError("; ".join(combined.errors))
    except (ConfigError, StoreError) as exc:
        _experiment_form(q, layout.message(str(exc), "error"))
        return
    if combined.warnings and not proceed_on_warnings:
        _experiment_form(q, warnings=combined.warnings)
        return
    for one, folder in zip(configs, folders):
        await _submit(q, one, folder)
    q.args["#"] = "experiments"
    count = len(configs)
    note = f"Started a grid search of {count} experiment{'s' if count != 1 else ''}."
    # The nav's move to #experiments makes the browser send that hash right after: keep the note.
    q.client.experiments_note = (note, time.monotonic())
    await experiments_page(q, layout.message(note, "success"))


async def _submit(q: Q, cfg, folder: Path) -> None:
    """Save the config into its folder, add the experiment to the store and hand it to the runner."""
    state = client_state(q)
    save_config(cfg, folder / "cfg.yaml")
    record = state.store.add_experiment(
        ExperimentRecord(
            name=cfg.experiment_name,
            dataset_id=state.wizard["dataset_id"],
            path=str(folder),
            problem_type=cfg.problem_type,
            config_file=str(folder / "cfg.yaml"),
        )
    )
    handler = state.store.get_setting("credential_handler", "env_file")
    env = secrets.load(handler, state.session_secrets)
    base = state.store.get_setting("openai_api_base", "")
    if base:
        env["OPENAI_API_BASE"] = base
    await q.run(app_runner().submit, record, list(cfg.environment.gpus), env)


# --- View experiments ---


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
            f"[{record.name}](#experiment/{record.id})",
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
    _keep_fresh(q, "experiments", lambda: _refresh_list(q))


def _refresh_list(q: Q) -> None:
    q.page["experiments"].items[0].table.rows = _experiment_table(q).table.rows


def _keep_fresh(q: Q, page_key: str, refresh) -> None:
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


@on("row_new_experiment")
async def row_new_experiment(q: Q) -> None:
    await _new_from(q, int(q.args.row_new_experiment))


@on("row_rename_experiment")
async def row_rename_experiment(q: Q) -> None:
    experiment_id = int(q.args.row_rename_experiment)
    if client_state(q).store.get_experiment(experiment_id) is None:
        await experiments_page(q, layout.message(f"No experiment {experiment_id}.", "error"))
        return
    q.client.rename_from_list = True
    _rename_dialog(q, experiment_id)


@on("row_stop_experiment")
async def row_stop_experiment(q: Q) -> None:
    await _stop(q, [int(q.args.row_stop_experiment)])


@on("row_delete_experiment")
async def row_delete_experiment(q: Q) -> None:
    _confirm_delete(q, [int(q.args.row_delete_experiment)])


# --- one experiment ---


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
    cards = {
        "experiment": ui.form_card(
            box="main",
            title=f"Experiment {record.name} ({app_runner().state(record)})",
            items=[
                ui.tabs(
                    name="experiment_tab",
                    value=tab,
                    items=[ui.tab(name=n, label=label) for n, label in TABS],
                ),
                export_buttons(),
                ui.buttons(
                    [
                        ui.button(name="new_from_experiment", label="New experiment"),
                        ui.button(name="rename_dialog", label="Rename experiment"),
                    ]
                ),
            ],
        )
    }
    cards.update(TAB_CARDS[tab](record))
    layout.show(q, cards)
    q.client.page_key = f"experiment/{experiment_id}/{tab}"
    if tab in ("charts", "logs"):
        _keep_fresh(q, q.client.page_key, lambda: _refresh_tab(q, record, tab))


def _refresh_tab(q: Q, record, tab: str) -> None:
    for name, card in TAB_CARDS[tab](record).items():
        q.page[name] = card


@on("experiment_tab")
async def change_experiment_tab(q: Q) -> None:
    await experiment_page(q, q.client.experiment_id, q.args.experiment_tab)


def _charts(record) -> dict:
    points, _ = ExperimentFolder(record.path).read_charts()
    cards = {}
    groups: dict[str, list] = {}
    for p in points:
        groups.setdefault(p.name.split("/")[-1], []).append((p.step, p.value, p.name.split("/")[0]))
    for metric, rows in groups.items():
        cards[f"chart_{metric}"] = ui.plot_card(
            box=ui.box("main", width="48%"),
            title=metric,
            data=data(fields=["step", "value", "split"], rows=[list(r) for r in rows]),
            plot=ui.plot([ui.mark(type="line", x="=step", y="=value", color="=split")]),
        )
    if not cards:
        cards["chart_none"] = ui.form_card(box="main", items=[ui.text("No chart points yet.")])
    return cards


def _summary(record) -> dict:
    folder = ExperimentFolder(record.path)
    status = folder.current_status()
    cfg, _ = load_config(record.config_file)
    rows = [
        ("Name", record.name),
        ("Problem type", PROBLEM_TYPE_LABELS.get(record.problem_type, record.problem_type)),
        ("LLM backbone", cfg.llm_backbone),
        ("Status", app_runner().state(record)),
        ("Progress", f"{(status.progress if status else 0) * 100:.0f}%"),
        ("Error", (status.error or "") if status else ""),
        ("Folder", record.path),
    ]
    table = "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    return {"experiment_body": ui.form_card(box="main", items=[ui.text(table)])}


def _train_insights(record) -> dict:
    path = ExperimentFolder(record.path).train_insights
    if not path.is_file():
        return {"experiment_body": ui.form_card(box="main", items=[ui.text("Not written yet.")])}
    insights = json.loads(path.read_text())
    items = []
    for number, pieces in enumerate(insights["samples"][:5], 1):
        text = "".join(
            f"**{_escape(p['text'])}**" if p["kind"] == "trained" else _escape(p["text"])
            for p in pieces
            if p["kind"] != "padding"
        )
        items += [ui.text_l(f"Sample {number}"), ui.text(text), ui.separator()]
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
            cells = " | ".join(f"**{k}:** {_escape(str(v))[:500]}" for k, v in row.items())
            items += [ui.text(cells), ui.separator()]
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


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace("*", "\\*")


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
