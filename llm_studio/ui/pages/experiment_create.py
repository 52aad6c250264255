"""Create experiment: the form derived from the settings declarations, YAML import, grid search,
new experiments copied from an old one, and submitting them to the runner."""

from __future__ import annotations

import time
from pathlib import Path

from h2o_wave import Q, on, ui
from h2o_wave.core import expando_to_dict

from llm_studio.config.grid import MAX_COMBINATIONS
from llm_studio.config.problem_types import PROBLEM_TYPE_LABELS
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import load_config
from llm_studio.models.offline_backbone import DEFAULT_BACKBONE
from llm_studio.runner import RunnerError, experiments_service
from llm_studio.store import StoreError, resolve
from llm_studio.ui import layout, safe_text, secrets, wave_files
from llm_studio.ui.pages.experiments import experiments_page
from llm_studio.ui.settings_form import apply_form, read_grid, settings_items
from llm_studio.ui.state import ExperimentDraft, PreviousExperiment, app_runner, client_state

BACKBONES = (
    DEFAULT_BACKBONE,
    "HuggingFaceTB/SmolLM2-360M-Instruct",
    "h2oai/h2o-danube3-500m-chat",
    "meta-llama/Llama-3.2-1B-Instruct",
    "Qwen/Qwen2.5-0.5B-Instruct",
)


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
    assert dataset is not None  # the dataset picked in the form's list
    cfg, _ = await q.run(load_config, dataset.config_file)
    cfg.experiment_name = experiments_service.free_name(state.store, dataset.name)
    cfg.llm_backbone = DEFAULT_BACKBONE
    cfg.environment.gpus = []
    state.draft = ExperimentDraft(cfg=cfg, dataset_id=dataset_id)
    _experiment_form(q)


# Errors and warnings show next to the Run button, where the user's eyes are after clicking it.
NEAR_RUN = "experiment_run_message"


def _experiment_form(
    q: Q,
    note: ui.Component | None = None,
    warnings: list[str] | None = None,
    error: str | None = None,
):
    state = client_state(q)
    draft = state.draft
    assert draft is not None  # the form is open: its handlers run only then
    cfg, grid = draft.cfg, draft.grid
    datasets = state.store.list_datasets()
    items: list = [note] if note else []
    previous = draft.previous
    if previous:
        items.append(ui.toggle(
            name="use_previous_weights", label="Use previous experiment weights",
            value=cfg.architecture.pretrained_weights == previous.path, trigger=True,
            tooltip=f"Start from the trained weights of {previous.name} instead of the "
            "backbone. With Epochs 0 this evaluates that model, e.g. on another validation set "
            "or with another metric.",
        ))  # fmt: skip
    items += [
        ui.text_l("General"),
        ui.dropdown(
            name="experiment_dataset",
            label="Dataset",
            value=str(draft.dataset_id),
            choices=[ui.choice(str(d.id), d.name) for d in datasets],
            trigger=True,
        ),
        ui.text(safe_text.labelled("Problem type", PROBLEM_TYPE_LABELS[cfg.problem_type])),
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
    if error:
        items.append(layout.message(error, "error", name=NEAR_RUN))
    elif warnings:
        items.append(layout.message("; ".join(warnings), "warning", name=NEAR_RUN))
        buttons = [ui.button(name="run_anyway", label="Run anyway", primary=True)]
    items.append(ui.buttons(buttons))
    layout.show(q, {"experiment": ui.form_card(box="main", title="Create experiment", items=items)})
    if error or warnings:
        safe_text.scroll_into_view(q, NEAR_RUN)


def _form_read(q: Q) -> bool:
    """Reads the form into the draft; on a bad value shows the form again with the error."""
    try:
        _read_form(q)
    except ConfigError as exc:
        _experiment_form(q, error=str(exc))
        return False
    return True


def _read_form(q: Q) -> None:
    draft = client_state(q).draft
    assert draft is not None  # the form is open: its handlers run only then
    cfg = draft.cfg
    if q.args.experiment_name is not None:
        cfg.experiment_name = q.args.experiment_name
    if q.args.llm_backbone:
        cfg.llm_backbone = q.args.llm_backbone
    args = expando_to_dict(q.args)
    if draft.grid is not None:  # first: a bad setting must not lose typed values
        draft.grid = read_grid(args)
    apply_form(cfg, args)


@on("grid_search")
async def grid_search_toggled(q: Q) -> None:
    """Grid search on shows a values widget under each setting a grid can vary; off hides them."""
    draft = client_state(q).draft
    assert draft is not None  # the form is open: its handlers run only then
    if not _form_read(q):
        return
    draft.grid = (draft.grid or {}) if q.args.grid_search else None
    _experiment_form(q)


@on("cfg__{key}")
async def setting_changed(q: Q, key: str) -> None:
    """A setting others depend on changed: re-render, showing or hiding its dependents."""
    if not _form_read(q):
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
    cfg, _ = await q.run(load_config, record.config_file)
    cfg.experiment_name = experiments_service.free_name(state.store, record.name)
    # "Use previous experiment weights" starts from this experiment's checkpoint instead.
    previous = PreviousExperiment(
        record.name, str(resolve(record.path)), cfg.architecture.pretrained_weights
    )
    state.draft = ExperimentDraft(cfg=cfg, dataset_id=record.dataset_id, previous=previous)
    q.client.page_key = "experiment/start"
    _experiment_form(q, layout.message(f"Settings copied from {record.name}.", "info"))


@on("use_previous_weights")
async def use_previous_weights(q: Q) -> None:
    """architecture.pretrained_weights: the copied experiment's folder (its checkpoint), or back
    to what that experiment had."""
    draft = client_state(q).draft
    assert draft is not None  # the form is open: its handlers run only then
    if not _form_read(q):
        return
    previous = draft.previous
    assert previous is not None  # the toggle is shown only with a previous experiment
    if q.args.use_previous_weights:
        draft.cfg.architecture.pretrained_weights = previous.path
    else:
        draft.cfg.architecture.pretrained_weights = previous.own_weights
    _experiment_form(q)


# The "New experiment" entry of a row's kebab menu on View experiments.
@on("row_new_experiment")
async def row_new_experiment(q: Q) -> None:
    await _new_from(q, int(q.args.row_new_experiment))


@on("experiment_dataset")
async def change_dataset(q: Q) -> None:
    """Another dataset: its dataset settings (files, columns, prompt format). A form copied from
    an experiment keeps everything else, so the copy can train or validate on other data."""
    state = client_state(q)
    draft = state.draft
    assert draft is not None  # the form is open: its handlers run only then
    record = state.store.get_dataset(int(q.args.experiment_dataset))
    assert record is not None  # the dataset picked in the form's list
    cfg, _ = await q.run(load_config, record.config_file)
    if draft.previous and cfg.problem_type == draft.cfg.problem_type:
        if not _form_read(q):
            return
        draft.cfg.dataset = cfg.dataset
        draft.dataset_id = record.id
        _experiment_form(q, layout.message(f"Dataset settings from {record.name}.", "info"))
        return
    cfg.experiment_name = experiments_service.free_name(state.store, record.name)
    cfg.environment.gpus = []
    # A new draft, keeping the grid toggle: no longer a copy of a previous experiment.
    state.draft = ExperimentDraft(cfg=cfg, dataset_id=record.id, grid=draft.grid)
    _experiment_form(q)


@on("experiment_yaml")
async def import_yaml(q: Q) -> None:
    state = client_state(q)
    assert state.draft is not None  # the form is open: its handlers run only then
    local = await wave_files.take_upload(
        q, q.args.experiment_yaml[0], str(state.store.db_path.parent)
    )
    try:
        imported, warnings = await q.run(load_config, local)
    except ConfigError as exc:
        _experiment_form(q, error=str(exc))
        return
    finally:
        Path(local).unlink(missing_ok=True)
    current = state.draft.cfg
    # The dataset's files stay those of the chosen dataset.
    imported.dataset.train_dataframe = current.dataset.train_dataframe
    imported.dataset.validation_dataframe = current.dataset.validation_dataframe
    state.draft.cfg = imported
    note = "Imported the YAML." + (f" {'; '.join(warnings)}" if warnings else "")
    _experiment_form(q, layout.message(note, "info"))


@on("run_experiment")
async def run_experiment(q: Q) -> None:
    await _run(q, proceed_on_warnings=False)


@on("run_anyway")
async def run_anyway(q: Q) -> None:
    await _run(q, proceed_on_warnings=True)


async def _run(q: Q, proceed_on_warnings: bool) -> None:
    """Check the experiment (or every combination of a grid search) like a YAML run, then
    submit them all: the runner queues them."""
    state = client_state(q)
    draft = state.draft
    assert draft is not None  # the form is open: its handlers run only then
    runner = app_runner()
    try:
        _read_form(q)
        # In a worker thread: the store, the folders, and nvidia-smi the first time.
        checked = await q.run(
            lambda: experiments_service.plan(state.store, draft.cfg, draft.grid, runner.gpu_count)
        )
    except (ConfigError, StoreError) as exc:
        _experiment_form(q, error=str(exc))
        return
    if checked.warnings and not proceed_on_warnings:
        _experiment_form(q, warnings=checked.warnings)
        return
    env = await q.run(_child_env, state)
    try:
        await q.run(experiments_service.submit, runner, state.store, checked, draft.dataset_id, env)
    except (RunnerError, StoreError, OSError) as exc:
        await experiments_page(q, layout.message(str(exc), "error"))
        return
    q.args["#"] = "experiments"
    if not checked.grid_search:
        await experiments_page(q)
        return
    # The nav's move to #experiments makes the browser send that hash right after: keep the note.
    q.client.experiments_note = (checked.summary, time.monotonic())
    await experiments_page(q, layout.message(checked.summary, "success"))


def _child_env(state) -> dict[str, str]:
    """The secrets (and OpenAI base) the training process gets through its environment."""
    env = secrets.load(secrets.current_handler(state.store), state.session_secrets)
    base = state.store.get_setting("openai_api_base", "")
    if base:
        env["OPENAI_API_BASE"] = base
    return env
