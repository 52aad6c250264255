"""The Charts tab: one plot per chart name of charts.jsonl (loss, lr, the metric, tokens/s), train
and validation in their own colours with a legend, values and axes in rounded numbers."""

from __future__ import annotations

from h2o_wave import data, ui

from llm_studio.experiments.folder import ExperimentFolder

SPLITS = ["train", "validation"]
# Fixed per split, so train is the same colour on every chart, alone or next to validation.
# Plain hex: the canvas does not resolve Wave's theme tokens ("$blue" draws grey).
SPLIT_COLOURS = "#1f77b4 #ff7f0e"


def rounded(value: float) -> float:
    """Four significant digits. A chart of one value (the one validation of a default run)
    labels its axis with the value itself, which would otherwise print every digit, e.g.
    11.51015341649912; the tooltip shows the same readable number."""
    return float(f"{value:.4g}")


def chart_cards(path: str) -> dict:
    points, _ = ExperimentFolder(path).read_charts()
    groups: dict[str, list] = {}
    for p in points:
        split, _, chart = p.name.rpartition("/")
        groups.setdefault(chart, []).append([p.step, rounded(p.value), split or "train"])
    cards = {}
    for chart, rows in groups.items():
        series = dict(color="=split", color_range=SPLIT_COLOURS, color_domain=SPLITS)
        cards[f"chart_{chart}"] = ui.plot_card(
            box=ui.box("main", width="48%"),
            title=chart,
            data=data(fields=["step", "value", "split"], rows=rows),
            plot=ui.plot(
                [
                    ui.mark(type="line", x="=step", y="=value", **series),
                    # Points too: with the default one validation per epoch, a validation
                    # series is a single point, which a line alone does not draw.
                    ui.mark(type="point", x="=step", y="=value", size=4, **series),
                ]
            ),
        )
    if not cards:
        cards["chart_none"] = ui.form_card(box="main", items=[ui.text("No chart points yet.")])
    return cards
