"""View datasets: the list, one dataset's tabs, and Edit / Merge / Delete."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from h2o_wave import Q, data, on, ui

from llm_studio.config.problem_types import PROBLEM_TYPE_LABELS
from llm_studio.config.yaml_io import load_config
from llm_studio.data.readers import DataError, read_dataframe
from llm_studio.store import StoreError
from llm_studio.store.recovery import delete_datasets
from llm_studio.ui import layout, safe_text
from llm_studio.ui.datasets_service import import_service
from llm_studio.ui.pages import dataset_import  # noqa: F401 (the wizard's handlers)
from llm_studio.ui.state import ImportWizard, client_state

TABS = (
    ("sample", "Sample train data"),
    ("visualization", "Sample train visualization"),
    ("statistics", "Train data statistics"),
    ("summary", "Summary"),
)
SAMPLE_ROWS = 20


@on("#datasets")
async def datasets_route(q: Q) -> None:
    await datasets_page(q)


async def datasets_page(q: Q, note: ui.Component | None = None) -> None:
    store = client_state(q).store
    rows = [
        ui.table_row(
            name=str(d.id),
            cells=[
                safe_text.link(d.name, f"dataset/{d.id}"),
                PROBLEM_TYPE_LABELS.get(d.problem_type, d.problem_type),
                Path(d.train_dataframe).name,
                Path(d.validation_dataframe).name if d.validation_dataframe else "None",
                str(d.train_rows if d.train_rows is not None else ""),
                str(d.validation_rows if d.validation_rows is not None else ""),
            ],
        )
        for d in store.list_datasets()
    ]
    columns = [
        ui.table_column(
            name="name",
            label="Name",
            min_width="180px",
            cell_type=ui.markdown_table_cell_type(target=""),
        ),
        ui.table_column(name="problem_type", label="Problem type", min_width="200px"),
        ui.table_column(name="train", label="Train dataframe"),
        ui.table_column(name="validation", label="Validation dataframe"),
        ui.table_column(name="train_rows", label="Train rows"),
        ui.table_column(name="validation_rows", label="Validation rows"),
    ]
    items: list = [note] if note else []
    items += [
        ui.table(name="datasets_table", columns=columns, rows=rows, multiple=True, height="500px"),
        ui.buttons(
            [
                ui.button(name="#dataset/import", label="Import dataset", primary=True),
                ui.button(name="delete_datasets", label="Delete datasets"),
            ]
        ),
    ]
    layout.show(q, {"datasets": ui.form_card(box="main", title="View datasets", items=items)})


@on("#dataset/{dataset_id:int}")
async def dataset_route(q: Q, dataset_id: int) -> None:
    await dataset_page(q, dataset_id)


async def dataset_page(q: Q, dataset_id: int, tab: str = "sample", note=None) -> None:
    store = client_state(q).store
    record = store.get_dataset(dataset_id)
    if record is None:
        await datasets_page(q, layout.message(f"No dataset with id {dataset_id}.", "error"))
        return
    q.client.dataset_id = dataset_id
    items: list = [note] if note else []
    items += [
        ui.tabs(
            name="dataset_tab",
            value=tab,
            items=[ui.tab(name=name, label=label) for name, label in TABS],
        ),
    ]
    try:
        items += await TAB_RENDERERS[tab](q, record)
    except (DataError, OSError) as exc:
        items.append(layout.message(str(exc), "error"))
    items.append(
        ui.buttons(
            [
                ui.button(name="new_experiment_from_dataset", label="New experiment", primary=True),
                ui.button(name="edit_dataset", label="Edit dataset"),
                ui.button(name="merge_dataset", label="Merge with existing dataset"),
                ui.button(name="delete_dataset", label="Delete dataset"),
                ui.button(name="#datasets", label="Back"),
            ]
        )
    )
    layout.show(
        q, {"dataset": ui.form_card(box="main", title=f"Dataset {record.name}", items=items)}
    )


@on("dataset_tab")
async def change_tab(q: Q) -> None:
    await dataset_page(q, q.client.dataset_id, q.args.dataset_tab)


def _dataset_cfg(record):
    cfg, _ = load_config(record.config_file)
    return cfg


async def _sample_tab(q: Q, record) -> list:
    df = await q.run(read_dataframe, record.train_dataframe)
    head = df.head(SAMPLE_ROWS)
    columns = [ui.table_column(name=f"c{i}", label=str(c)) for i, c in enumerate(head.columns)]
    rows = [
        ui.table_row(name=str(i), cells=[_short(v) for v in row])
        for i, row in enumerate(head.itertuples(index=False))
    ]
    return [ui.table(name="sample_table", columns=columns, rows=rows, height="420px")]


def _short(value, limit: int = 300) -> str:
    text = "" if _missing(value) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _missing(value) -> bool:
    """An empty CSV cell (None, NaN, pandas' NA) shows as an empty cell, not "nan"."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists and arrays are values
        return False


async def _visualization_tab(q: Q, record) -> list:
    from llm_studio.data.visualization import sample_conversations

    cfg = _dataset_cfg(record)
    df = await q.run(read_dataframe, record.train_dataframe)
    samples = await q.run(sample_conversations, df, cfg.dataset, 5, 0)
    items: list = []
    for number, bubbles in enumerate(samples, 1):
        items.append(ui.text_l(f"Sample {number}"))
        for bubble in bubbles:
            who = {"system": "System", "user": "User", "assistant": "Assistant"}[bubble["role"]]
            if bubble.get("rejected"):
                who = f"{who} (rejected)"
            items.append(ui.text(safe_text.labelled(who, _short(bubble["text"], 2000))))
        items.append(ui.separator())
    return items


async def _statistics_tab(q: Q, record) -> list:
    from llm_studio.data.statistics import dataset_statistics

    cfg = _dataset_cfg(record)
    cache = Path(record.path) / ".statistics"
    stats = await q.run(dataset_statistics, Path(record.train_dataframe), cfg.dataset, cache)
    columns = [
        ui.table_column(name=n, label=label)
        for n, label in (
            ("column", "Column"),
            ("dtype", "Type"),
            ("count", "Count"),
            ("missing", "Missing"),
            ("unique", "Unique"),
            ("words", "Mean words"),
        )
    ]
    rows = []
    for i, c in enumerate(stats.columns):
        words = c.text.words_mean if c.text is not None else None
        rows.append(
            ui.table_row(
                name=str(i),
                cells=[
                    c.name,
                    str(c.dtype),
                    str(c.count),
                    str(c.missing),
                    str(c.unique),
                    "" if words is None else f"{words:.1f}",
                ],
            )
        )
    items: list = [ui.table(name="statistics_table", columns=columns, rows=rows, height="260px")]
    for field in ("prompt", "answer"):
        distribution = stats.length(field)
        if distribution is not None:
            items += _length_chart(field, distribution)
    return items


def _length_chart(field: str, distribution) -> list:
    """A bar per length bin: how many rows have a prompt (or answer) of that many words."""
    unit = distribution.unit
    median = distribution.quantiles.get("50%")
    summary = f"mean {distribution.mean:.1f}, " + (
        f"median {median:.0f}, " if median is not None else ""
    )
    return [
        ui.text(
            f"**{field.capitalize()} length in {unit}** ({summary}max {distribution.max}, "
            f"{distribution.rows} rows)"
        ),
        ui.visualization(
            name=f"{field}_length_chart",
            plot=ui.plot(
                [
                    ui.mark(
                        type="interval",
                        x=f"={unit}",
                        y="=rows",
                        x_title=f"{field} length ({unit})",
                        y_title="rows",
                        y_min=0,
                    )
                ]
            ),
            data=data(
                fields=[unit, "rows"],
                rows=[[label, count] for label, count in distribution.histogram.bars()],
                pack=True,
            ),
            height="220px",
        ),
    ]


async def _summary_tab(q: Q, record) -> list:
    rows = [
        ("Name", record.name),
        ("Problem type", PROBLEM_TYPE_LABELS.get(record.problem_type, record.problem_type)),
        ("Train dataframe", Path(record.train_dataframe).name),
        ("Train rows", str(record.train_rows)),
        ("Validation dataframe", Path(record.validation_dataframe).name if record.validation_dataframe else "None"),
        ("Validation rows", str(record.validation_rows) if record.validation_rows else "None"),
    ]  # fmt: skip
    cfg = _dataset_cfg(record)
    answer = cfg.dataset.answer_column
    rows.append(("Labels", ", ".join(answer) if isinstance(answer, list) else answer))
    return [ui.text(safe_text.table(["", ""], [list(row) for row in rows]))]


TAB_RENDERERS = {
    "sample": _sample_tab,
    "visualization": _visualization_tab,
    "statistics": _statistics_tab,
    "summary": _summary_tab,
}


# --- edit, merge, delete ---


@on("edit_dataset")
async def edit_dataset(q: Q) -> None:
    from llm_studio.ui.pages.dataset_import import _configure_form, _suggest  # noqa: F401

    state = client_state(q)
    record = state.store.get_dataset(q.client.dataset_id)
    assert record is not None  # the dataset page is open
    service = import_service(state.store)
    files = service.open_dataset(record.name)
    infos = await q.run(service.inspect, files)
    cfg = _dataset_cfg(record)
    settings = {}
    for key in (
        "prompt_column",
        "answer_column",
        "system_column",
        "parent_id_column",
        "rejected_answer_column",
        "rejected_prompt_column",
    ):
        value = getattr(cfg.dataset, key, None)
        if value:
            settings[key] = value
    state.wizard = ImportWizard(
        editing=record.name,
        files=files,
        infos=infos,
        problem_type=record.problem_type,
        train=Path(record.train_dataframe).name,
        validation=Path(record.validation_dataframe).name if record.validation_dataframe else None,
        settings=settings,
        name=record.name,
    )  # fmt: skip
    _configure_form(q)


@on("merge_dataset")
async def merge_dataset(q: Q) -> None:
    store = client_state(q).store
    record = store.get_dataset(q.client.dataset_id)
    assert record is not None  # the dataset page is open
    others = [d for d in store.list_datasets() if d.id != record.id]
    items = [
        ui.text(safe_text.plain(f"Bring another dataset's files into {record.name}.")),
        ui.dropdown(
            name="merge_source",
            label="Dataset to merge",
            choices=[ui.choice(d.name, d.name) for d in others],
            value=others[0].name if others else None,
        ),
        ui.buttons(
            [
                ui.button(name="merge_confirm", label="Merge", primary=True),
                ui.button(name="#datasets", label="Cancel"),
            ]
        ),
    ]
    layout.show(q, {"dataset": ui.form_card(box="main", title="Merge datasets", items=items)})


@on("merge_confirm")
async def merge_confirm(q: Q) -> None:
    state = client_state(q)
    record = state.store.get_dataset(q.client.dataset_id)
    assert record is not None  # the dataset page is open
    try:
        added = await q.run(import_service(state.store).merge, record.name, q.args.merge_source)
    except (DataError, StoreError) as exc:
        await dataset_page(q, record.id, note=layout.message(str(exc), "error"))
        return
    note = layout.message(f"Merged {', '.join(added)} into {record.name}.", "success")
    await dataset_page(q, record.id, note=note)


@on("delete_dataset")
async def delete_one(q: Q) -> None:
    _confirm_delete(q, [q.client.dataset_id])


@on("delete_datasets")
async def delete_selected(q: Q) -> None:
    ids = [int(i) for i in (q.args.datasets_table or [])]
    if not ids:
        await datasets_page(q, layout.message("Select the datasets to delete first.", "warning"))
        return
    _confirm_delete(q, ids)


def _confirm_delete(q: Q, ids: list[int]) -> None:
    store = client_state(q).store
    names = [r.name for r in map(store.get_dataset, ids) if r]
    q.client.delete_ids = ids
    q.page["meta"].dialog = ui.dialog(
        title="Delete datasets",
        name="delete_dialog",
        items=[
            ui.text(safe_text.plain(f"Delete {', '.join(names)}? Its files are removed too.")),
            ui.buttons(
                [
                    ui.button(name="delete_confirm", label="Delete", primary=True),
                    ui.button(name="delete_cancel", label="Cancel"),
                ]
            ),
        ],
    )


@on("delete_cancel")
async def delete_cancel(q: Q) -> None:
    q.page["meta"].dialog = None


@on("delete_confirm")
async def delete_confirm(q: Q) -> None:
    q.page["meta"].dialog = None
    store = client_state(q).store
    try:
        deleted = delete_datasets(store, q.client.delete_ids or [])  # records, then folders
    except StoreError as exc:
        await datasets_page(q, layout.message(str(exc), "error"))
        return
    names = ", ".join(r.name for r in deleted)
    await datasets_page(q, layout.message(f"Deleted {names}.", "success"))


@on("new_experiment_from_dataset")
async def new_experiment_from_dataset(q: Q) -> None:
    from llm_studio.ui.pages.experiment_create import open_form_for_dataset

    await open_form_for_dataset(q, q.client.dataset_id)
