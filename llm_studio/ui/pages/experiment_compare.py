"""Compare experiments: pick several, see their charts overlaid (one plot per chart name, a line
per experiment) and their configs side by side, with the settings that differ in bold."""

from __future__ import annotations

from typing import Any

from h2o_wave import Q, data, on, ui

from llm_studio.config.problem_types import PROBLEM_TYPE_LABELS
from llm_studio.config.settings import ConfigError
from llm_studio.config.yaml_io import load_config, to_dict
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.store import resolve
from llm_studio.ui import layout, safe_text
from llm_studio.ui.pages.experiment_charts import rounded, specification
from llm_studio.ui.state import app_runner, client_state

PAGE = "experiments/compare"
TABS = (("charts", "Charts"), ("config", "Config"))
# Charts shown first, in this order; the rest follow by name.
CHART_ORDER = ("train/loss", "validation/loss")
LAST_CHARTS = ("train/lr",)
# One color per experiment (the theme's palette may be a single gray).
COLORS = "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #17becf #bcbd22 #7f7f7f"


@on(f"#{PAGE}")
async def compare_route(q: Q) -> None:
    # Rows ticked on View experiments come along when a button there links here.
    ticked = q.args.experiments_table
    if ticked:
        q.client.compare_ids = [int(i) for i in ticked]
    await compare_page(q)


@on("compare_run")
async def compare_run(q: Q) -> None:
    # The table sends its selection only when it changed since the last event.
    ticked = q.args.compare_table
    ids = [int(i) for i in ticked] if ticked is not None else list(q.client.compare_ids or [])
    q.client.compare_ids = ids
    note = None
    if len(ids) < 2:
        note = layout.message("Select at least two experiments to compare.", "warning")
    await compare_page(q, note)


@on("compare_tab")
async def compare_tab(q: Q) -> None:
    q.client.compare_tab = q.args.compare_tab
    await compare_page(q)


@on("compare_only_diff", lambda value: isinstance(value, bool))
async def compare_only_diff(q: Q) -> None:
    q.client.compare_only_diff = q.args.compare_only_diff
    await compare_page(q)


async def compare_page(q: Q, note: ui.Component | None = None) -> None:
    store = client_state(q).store
    records = list(reversed(store.list_experiments()))
    known = {r.id: r for r in records}
    selected = [known[i] for i in (q.client.compare_ids or []) if i in known]
    runner = app_runner()  # created on the loop, once: the worker thread only uses it
    states = await q.run(lambda: [runner.state(r) for r in records])  # reads status files
    items: list = [note] if note else []
    if not records:
        items.append(layout.message("There are no experiments to compare yet.", "info"))
    items += [
        ui.text("Select the experiments to compare, then click **Compare experiments**."),
        ui.table(
            name="compare_table",
            columns=[
                ui.table_column(name="name", label="Name", min_width="200px", searchable=True),
                ui.table_column(name="problem_type", label="Problem type", min_width="260px"),
                ui.table_column(name="status", label="Status"),
            ],
            rows=[
                ui.table_row(
                    name=str(r.id),
                    cells=[
                        r.name,
                        PROBLEM_TYPE_LABELS.get(r.problem_type, r.problem_type),
                        state,
                    ],
                )
                for r, state in zip(records, states, strict=True)
            ],
            multiple=True,
            values=[str(r.id) for r in selected],
            height=f"{min(420, 150 + 44 * len(records))}px",
        ),
        ui.buttons([ui.button(name="compare_run", label="Compare experiments", primary=True)]),
    ]
    cards = {"compare": ui.form_card(box="main", title="Compare experiments", items=items)}
    if len(selected) >= 2:
        tab = q.client.compare_tab or "charts"
        cards["compare_tabs"] = ui.form_card(
            box="main",
            items=[
                ui.tabs(
                    name="compare_tab",
                    value=tab,
                    items=[ui.tab(name=n, label=label) for n, label in TABS],
                )
            ],
        )
        # Both read every selected experiment's files: in a worker thread, off the event loop.
        if tab == "config":
            cards.update(await q.run(config_cards, selected, bool(q.client.compare_only_diff)))
        else:
            cards.update(await q.run(chart_cards, selected))
    layout.show(q, cards)
    q.client.page_key = PAGE  # ends the live refresh of the page shown before


# --- charts ---


def chart_series(records) -> dict[str, list[tuple[int, float, str]]]:
    """Chart name -> (step, value, experiment name) points of all the experiments, ordered."""
    series: dict[str, list[tuple[int, float, str]]] = {}
    for record in records:
        points, _ = ExperimentFolder(resolve(record.path)).read_charts()
        for p in points:
            series.setdefault(p.name, []).append((p.step, p.value, record.name))

    def rank(name: str) -> tuple:
        if name in CHART_ORDER:
            return (0, CHART_ORDER.index(name), name)
        if name in LAST_CHARTS:
            return (3, LAST_CHARTS.index(name), name)
        return (1 if name.startswith("validation/") else 2, 0, name)

    return {name: series[name] for name in sorted(series, key=rank)}


def chart_cards(records) -> dict:
    series = chart_series(records)
    if not series:
        return {
            "compare_body": ui.form_card(
                box="main", items=[ui.text("None of these experiments has chart points yet.")]
            )
        }
    cards: dict[str, Any] = {}  # wave's card classes share no base class
    names = [r.name for r in records]
    colours = [COLORS.split()[i % len(COLORS.split())] for i in range(len(names))]
    for number, (name, rows) in enumerate(series.items()):
        # Vega-Lite as on an experiment's Charts tab: Wave's plot prints tick arithmetic
        # (6.299999999999999) on its axes.
        cards[f"compare_chart_{number}"] = ui.vega_card(
            box=ui.box("main", height="330px"),
            title=name,
            specification=specification(name.split("/")[-1], "experiment", names, colours),
            data=data(
                fields=["step", "value", "experiment"],
                rows=[[step, rounded(value), who] for step, value, who in rows],
            ),
        )
    cards["compare_summary"] = ui.form_card(
        box="main", title="Last values", items=[ui.text(summary_table(records, series))]
    )
    return cards


def summary_table(records, series) -> str:
    """One row per chart, the last value of each experiment (blank: none)."""
    names = [r.name for r in records]
    lines = []
    for chart, rows in series.items():
        last: dict[str, float] = {}
        for _step, value, experiment in sorted(rows):
            last[experiment] = value
        lines.append([chart] + [f"{last[n]:.5g}" if n in last else "" for n in names])
    return safe_text.table(["chart", *names], lines)


# --- configs ---


def flat_config(record) -> dict[str, str]:
    """The experiment's settings as dotted key -> text."""
    try:
        cfg, _ = load_config(
            resolve(record.config_file or ExperimentFolder(resolve(record.path)).cfg_yaml)
        )
    except (ConfigError, TypeError) as exc:
        return {"(config)": f"cannot be read: {exc}"}
    flat: dict[str, str] = {}
    for key, value in to_dict(cfg).items():
        if isinstance(value, dict):
            for sub, item in value.items():
                flat[f"{key}.{sub}"] = _text(item)
        else:
            flat[key] = _text(value)
    return flat


def config_rows(records) -> list[tuple[str, list[str], bool]]:
    """(key, one value per experiment, differs), the differing settings first."""
    configs = [flat_config(r) for r in records]
    keys: list[str] = []
    for config in configs:
        keys += [k for k in config if k not in keys]
    rows = []
    for key in keys:
        values = [config.get(key, "") for config in configs]
        rows.append((key, values, len(set(values)) > 1))
    return sorted(rows, key=lambda row: not row[2])  # stable: keeps the config order


def config_cards(records, only_differences: bool) -> dict:
    rows = config_rows(records)
    if only_differences:
        rows = [row for row in rows if row[2]]
    differing = sum(1 for row in rows if row[2])
    markdown = ui.markdown_table_cell_type()
    columns = [
        ui.table_column(name="setting", label="Setting", min_width="260px", searchable=True,
                        cell_type=markdown),
    ] + [
        ui.table_column(name=f"e{r.id}", label=r.name, min_width="240px", cell_type=markdown)
        for r in records
    ]  # fmt: skip
    table_rows = [
        ui.table_row(
            name=key,
            cells=[_cell(key, differs)] + [_cell(v, differs) for v in values],
        )
        for key, values, differs in rows
    ]
    return {
        "compare_body": ui.form_card(
            box="main",
            items=[
                ui.toggle(
                    name="compare_only_diff",
                    label="Show only differing settings",
                    value=only_differences,
                    trigger=True,
                ),
                ui.text(f"**{differing}** setting(s) differ; they are in bold and listed first."),
                ui.table(name="compare_config", columns=columns, rows=table_rows, height="600px"),
            ],
        )
    }


def _text(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _cell(text: str, differs: bool) -> str:
    """A markdown cell showing `text` exactly, in bold where the experiments differ."""
    if not text:
        return text
    return safe_text.strong(text) if differs else safe_text.plain(text)
