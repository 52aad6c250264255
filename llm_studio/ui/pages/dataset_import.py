"""Import dataset: source -> Configure dataset -> Data validity check -> Continue (saved).

Edit dataset re-enters at Configure with the dataset's own files. Blocking work (fetching,
reading, checking) runs in a worker thread through `q.run`, so the page stays responsive.
"""

from __future__ import annotations

from pathlib import Path

from h2o_wave import Q, on, ui

from llm_studio.config.problem_types import (
    DEFAULT_PROBLEM_TYPE,
    PROBLEM_TYPE_LABELS,
    PROBLEM_TYPES,
)
from llm_studio.connectors import CONNECTORS
from llm_studio.data.readers import DataError
from llm_studio.store import StoreError
from llm_studio.store.columns import suggest_columns, suggest_dataframes
from llm_studio.ui import layout, safe_text, wave_files
from llm_studio.ui.datasets_service import import_service, local_roots_note
from llm_studio.ui.state import ImportWizard, client_state

SOURCES = {"upload": "Upload", "local": "Local", "s3": "AWS S3", "kaggle": "Kaggle"}
UPLOAD_TYPES = ["csv", "pq", "parquet", "json", "jsonl", "zip"]
# Column settings by key: label, whether several columns may be picked, whether it may be None.
COLUMN_SETTINGS = (
    ("system_column", "System column", False, True),
    ("prompt_column", "Prompt column", True, False),
    ("rejected_prompt_column", "Rejected prompt column", False, True),
    ("answer_column", "Answer column", None, False),  # several only for label types
    ("rejected_answer_column", "Rejected answer column", False, False),
    ("parent_id_column", "Parent id column", False, True),
)
NONE = "None"


def _error(q: Q, exc: Exception) -> ui.Component:
    return layout.message(str(exc), "error")


# --- step 1: the source ---


def _abandon(q: Q) -> None:
    """Forget the wizard's progress; a staged import it held is removed."""
    state = client_state(q)
    if state.wizard.staged is not None:
        import_service(state.store).discard(state.wizard.staged)
    state.wizard = ImportWizard()


@on("#dataset/import")
async def import_page(q: Q) -> None:
    _abandon(q)
    await _source_form(q, q.args.import_source or "upload")


@on("import_cancel")
async def cancel(q: Q) -> None:
    # A plain button, not "#dataset/import": the hash is that already, so no event would come.
    _abandon(q)
    await _source_form(q, q.args.import_source or "upload")


@on("import_source")
async def change_source(q: Q) -> None:
    await _source_form(q, q.args.import_source)


async def _source_form(
    q: Q, source: str, note: ui.Component | None = None, values: dict | None = None
) -> None:
    """`values`: what the user typed, shown again after an error (secrets excepted)."""
    values = values or {}
    items: list = [note] if note else []
    items.append(
        ui.dropdown(
            name="import_source",
            label="Source",
            value=source,
            trigger=True,
            choices=[ui.choice(k, v) for k, v in SOURCES.items()],
        )
    )
    if source == "upload":
        items.append(
            ui.file_upload(
                name="upload_files",
                label="Upload",
                multiple=False,
                file_extensions=UPLOAD_TYPES,
                max_file_size=10000,
                height="180px",
            )
        )
    else:
        if source == "local":
            items.append(ui.text(local_roots_note()))
        for param in CONNECTORS[source].params:
            items.append(
                ui.textbox(
                    name=f"param_{param.name}",
                    label=param.label,
                    value=None if param.secret else values.get(param.name) or None,
                    password=param.secret,
                    required=param.required,
                    tooltip=param.tip or None,
                )
            )
        items.append(ui.buttons([ui.button(name="import_fetch", label="Continue", primary=True)]))
    layout.show(q, {"import": ui.form_card(box="main", title="Import dataset", items=items)})


@on("upload_files")
async def uploaded(q: Q) -> None:
    state = client_state(q)
    local_dir = state.store.db_path.parent.parent / "tmp" / "uploads"
    local_dir.mkdir(parents=True, exist_ok=True)
    # Taken out of waved's data directory: only our copy stays.
    paths = [await wave_files.take_upload(q, url, str(local_dir)) for url in q.args.upload_files]
    await _fetch(q, "upload", {"paths": paths, "move": True})


@on("import_fetch")
async def fetch(q: Q) -> None:
    source = q.args.import_source or "upload"
    params = {p.name: q.args[f"param_{p.name}"] or "" for p in CONNECTORS[source].params}
    await _fetch(q, source, params)


async def _fetch(q: Q, source: str, params: dict) -> None:
    state = client_state(q)
    service = import_service(state.store)
    layout.show(
        q,
        {
            "import": ui.form_card(
                box="main", title="Import dataset", items=[ui.progress("Fetching")]
            )
        },
    )
    await q.page.save()
    try:
        _abandon(q)  # another import replaces the one in progress
        staged, infos = await q.run(service.open_import, source, params)
    except (DataError, StoreError, OSError) as exc:
        await _source_form(q, source, _error(q, exc), params)
        return
    train, validation = suggest_dataframes(staged.dataframes)
    state.wizard = ImportWizard(
        source=source,
        staged=staged,
        infos=infos,
        name=Path(train or staged.dataframes[0]).stem if staged.dataframes else "dataset",
        train=train,
        validation=validation,
        problem_type=state.store.get_setting("default_problem_type", DEFAULT_PROBLEM_TYPE),
    )
    _suggest(state.wizard)
    _configure_form(q)


def _suggest(wizard: ImportWizard) -> None:
    wizard.settings = suggest_columns(wizard.problem_type, wizard.columns())


# --- step 2: Configure dataset ---


def _configure_form(q: Q, note: ui.Component | None = None) -> None:
    wizard = client_state(q).wizard
    problem_type = wizard.problem_type
    frames = wizard.data_files.dataframes
    items: list = [note] if note else []
    if wizard.editing:
        items.append(ui.text_l(safe_text.plain(f"Edit dataset {wizard.editing}")))
    else:
        items.append(ui.textbox(name="dataset_name", label="Dataset name", value=wizard.name))
    items += [
        ui.dropdown(
            name="problem_type",
            label="Problem type",
            value=problem_type,
            trigger=True,
            choices=[ui.choice(k, v) for k, v in PROBLEM_TYPE_LABELS.items()],
        ),
        ui.dropdown(
            name="train_dataframe",
            label="Train dataframe",
            value=wizard.train,
            trigger=True,
            choices=[ui.choice(f, f) for f in frames],
        ),
        ui.dropdown(
            name="validation_dataframe",
            label="Validation dataframe",
            value=wizard.validation or NONE,
            choices=[ui.choice(NONE, NONE)] + [ui.choice(f, f) for f in frames],
        ),
    ]
    items += _column_dropdowns(wizard)
    items.append(
        ui.buttons(
            [
                ui.button(name="import_configure", label="Continue", primary=True),
                ui.button(name="#datasets" if wizard.editing else "import_cancel",
                          label="Cancel"),
            ]
        )
    )  # fmt: skip
    layout.show(q, {"import": ui.form_card(box="main", title="Configure dataset", items=items)})


def _column_dropdowns(wizard: ImportWizard) -> list:
    """One dropdown per column setting the problem type has, offering the train columns."""
    dataset_section = PROBLEM_TYPES[wizard.problem_type]().dataset
    columns, settings = wizard.columns(), wizard.settings
    found: list = []
    for key, label, multi, optional in COLUMN_SETTINGS:
        if not hasattr(dataset_section, key):
            continue
        default = getattr(dataset_section, key)
        several = isinstance(default, list) if multi is None else multi
        value = settings.get(key)
        choices = ([ui.choice(NONE, NONE)] if optional else []) + [ui.choice(c, c) for c in columns]
        if several:
            values = value if isinstance(value, list) else ([value] if value else [])
            found.append(
                ui.dropdown(name=f"col_{key}", label=label, values=values, choices=choices)
            )
        else:
            chosen = value[0] if isinstance(value, list) and value else value
            found.append(
                ui.dropdown(
                    name=f"col_{key}",
                    label=label,
                    value=chosen or (NONE if optional else None),
                    choices=choices,
                )
            )
    return found


def _read_form(q: Q) -> None:
    wizard = client_state(q).wizard
    if q.args.dataset_name is not None:
        wizard.name = q.args.dataset_name
    wizard.problem_type = q.args.problem_type or wizard.problem_type
    wizard.train = q.args.train_dataframe or wizard.train
    validation = q.args.validation_dataframe
    wizard.validation = None if validation in (None, NONE) else validation
    settings = {}
    for key, *_ in COLUMN_SETTINGS:
        value = q.args[f"col_{key}"]
        if value is None or value == NONE or value == []:
            continue
        settings[key] = value
    wizard.settings = settings


@on("problem_type")
@on("train_dataframe")
async def configure_changed(q: Q) -> None:
    _read_form(q)
    _suggest(client_state(q).wizard)
    _configure_form(q)


@on("import_configure")
async def configure(q: Q) -> None:
    state = client_state(q)
    wizard = state.wizard
    _read_form(q)
    service = import_service(state.store)
    try:
        if not wizard.editing:
            service.check_name(wizard.name)
        configured = await q.run(
            service.configure,
            wizard.data_files,
            problem_type=wizard.problem_type,
            train_dataframe=wizard.train,
            validation_dataframe=wizard.validation,
            settings=wizard.settings,
        )
    except (DataError, StoreError) as exc:
        _configure_form(q, _error(q, exc))
        return
    wizard.configured = configured
    _preview(q)


# --- step 3: Data validity check ---


def _preview(q: Q, note: ui.Component | None = None) -> None:
    configured = client_state(q).wizard.configured
    assert configured is not None  # Continue is shown after Configure
    items: list = [note] if note else []
    items += [layout.message(w, "warning") for w in configured.warnings]
    items.append(ui.text("Sample prompts and answers, as the model will see them:"))
    for sample in configured.preview:
        items.append(ui.separator())
        items.append(ui.text(safe_text.labelled("Input", sample.prompt)))
        items.append(ui.text(safe_text.labelled("Answer", sample.answer)))
        if sample.rejected_answer is not None:
            items.append(ui.text(safe_text.labelled("Rejected answer", sample.rejected_answer)))
    items.append(
        ui.buttons(
            [
                ui.button(name="import_commit", label="Continue", primary=True),
                ui.button(name="import_back", label="Back"),
            ]
        )
    )
    layout.show(q, {"import": ui.form_card(box="main", title="Data validity check", items=items)})


@on("import_back")
async def back(q: Q) -> None:
    _configure_form(q)


@on("import_commit")
async def commit(q: Q) -> None:
    state = client_state(q)
    wizard = state.wizard
    service = import_service(state.store)
    try:
        if wizard.editing:
            await q.run(service.save_edit, wizard.editing, wizard.configured)
        else:
            await q.run(service.commit, wizard.staged, wizard.name, wizard.configured)
    except (DataError, StoreError) as exc:
        _preview(q, _error(q, exc))
        return
    state.wizard = ImportWizard()
    from llm_studio.ui.pages.datasets import datasets_page

    q.args["#"] = "datasets"
    await datasets_page(q)
