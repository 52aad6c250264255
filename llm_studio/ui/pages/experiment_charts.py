"""The Charts tab: one plot per chart name of charts.jsonl (loss, lr, the metric, tokens/s), train
and validation in their own colours with a legend, axes in rounded numbers.

Drawn with Vega-Lite (bundled with Wave, offline): Wave's own plot cannot format an axis (its
number template keeps the first label it formats) and prints tick arithmetic such as
6.289999999999999 or a lone value's every digit (11.51015341649912).
"""

from __future__ import annotations

import json
from typing import Any

from h2o_wave import data, ui

from llm_studio.experiments.folder import ExperimentFolder

# Fixed per split, so train is the same colour on every chart, alone or next to validation.
SPLIT_COLOURS = {"train": "#1f77b4", "validation": "#ff7f0e"}
AXIS_FORMAT = ",.4~g"  # 4 significant digits, no trailing zeros: 6.29, 0.000025, 1,527


def rounded(value: float) -> float:
    """Six significant digits in the tooltip: readable and still exact enough."""
    return float(f"{value:.6g}")


def _specification(chart: str, splits: list[str]) -> str:
    colours = [SPLIT_COLOURS.get(s, "#7f7f7f") for s in splits]
    # Validation as points too: with the default one validation per epoch, its series is a
    # single point, which a line alone does not draw.
    return specification(chart, "split", splits, colours, "datum.split != 'train'")


def specification(
    title: str, colour_field: str, domain: list[str], colours: list[str], points: str = "true"
) -> str:
    """A Vega-Lite line chart of (step, value, `colour_field`) rows, a colour per `domain`
    entry, axes in rounded numbers; the rows matching the `points` expression also as points.
    Compare experiments draws its charts with it too."""
    return json.dumps(
        {
            "height": 240,
            "encoding": {
                "x": {"field": "step", "type": "quantitative", "title": "step"},
                "y": {
                    "field": "value",
                    "type": "quantitative",
                    "title": title,
                    "scale": {"zero": False},
                    "axis": {"format": AXIS_FORMAT},
                },
                "color": {
                    "field": colour_field,
                    "type": "nominal",
                    "title": None,
                    "scale": {"domain": domain, "range": colours},
                    "legend": {"orient": "bottom"},
                },
                "tooltip": [
                    {"field": colour_field, "type": "nominal"},
                    {"field": "step", "type": "quantitative"},
                    {"field": "value", "type": "quantitative", "format": ",.6~g"},
                ],
            },
            "layer": [
                {"mark": {"type": "line"}},
                {
                    "mark": {"type": "point", "filled": True, "size": 60},
                    "transform": [{"filter": points}],
                },
            ],
        }
    )


def chart_cards(path: str) -> dict:
    points, _ = ExperimentFolder(path).read_charts()
    groups: dict[str, list] = {}
    for p in points:
        split, _, chart = p.name.rpartition("/")
        groups.setdefault(chart, []).append([p.step, rounded(p.value), split or "train"])
    cards: dict[str, Any] = {}  # wave's card classes share no base class
    for chart, rows in groups.items():
        splits = sorted({r[2] for r in rows}, key=lambda s: (s != "train", s))
        cards[f"chart_{chart}"] = ui.vega_card(
            box=ui.box("main", width="48%"),
            title=chart,
            specification=_specification(chart, splits),
            data=data(fields=["step", "value", "split"], rows=rows),
        )
    if not cards:
        cards["chart_none"] = ui.form_card(box="main", items=[ui.text("No chart points yet.")])
    return cards
