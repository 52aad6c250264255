"""Create and view experiments: arrive with the GUI experiments issue; until then they say so."""

from __future__ import annotations

from h2o_wave import Q, on, ui

from llm_studio.ui import layout

NOT_YET = (
    "Creating and watching experiments from the GUI is not built yet. Meanwhile run them "
    "from the command line: `python train.py -Y cfg.yaml` (each dataset folder under "
    "`data/user/` holds a `cfg.yaml` to start from)."
)


@on("#experiment/start")
@on("#experiments")
async def experiments_not_built(q: Q) -> None:
    layout.show(
        q,
        {"experiments": ui.form_card(box="main", title="Experiments", items=[ui.text(NOT_YET)])},
    )
