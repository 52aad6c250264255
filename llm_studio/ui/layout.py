"""The page frame: header, left navigation (the guide's labels) and the main zone."""

from __future__ import annotations

from h2o_wave import Q, ui

from llm_studio.ui import safe_text

NAV = (
    ("LLM Studio", (("#home", "Home", "Home"), ("#settings", "Settings", "Settings"))),
    (
        "Data",
        (
            ("#dataset/import", "Import dataset", "Upload"),
            ("#datasets", "View datasets", "Database"),
        ),
    ),
    (
        "Experiments",
        (
            ("#experiment/start", "Create experiment", "BullseyeTarget"),
            ("#experiments", "View experiments", "TestBeaker"),
            ("#experiments/compare", "Compare experiments", "DiffSideBySide"),
        ),
    ),
)

# Cards of the main zone that the next page replaces.
MAIN_CARDS = "main_cards"
# Set while a page's notification bar is up: the next page takes it down.
NOTIFICATION_SHOWN = "notification_shown"


def frame(q: Q) -> None:
    q.page["meta"] = ui.meta_card(
        box="",
        title="LLM Studio",
        theme=q.client.theme or "light",
        layouts=[
            ui.layout(
                breakpoint="xs",
                zones=[
                    ui.zone("header"),
                    ui.zone(
                        "body",
                        direction=ui.ZoneDirection.ROW,
                        zones=[ui.zone("nav", size="220px"), ui.zone("main")],
                    ),
                ],
            )
        ],
    )
    q.page["header"] = ui.header_card(
        box="header", title="LLM Studio", subtitle="No-code fine-tuning of LLMs", icon="Robot"
    )
    q.page["nav"] = ui.nav_card(
        box="nav",
        value=q.args["#"] or "home",
        items=[
            ui.nav_group(
                group,
                items=[ui.nav_item(name=n, label=label, icon=icon) for n, label, icon in items],
            )
            for group, items in NAV
        ],
    )


def show(q: Q, cards: dict) -> None:
    """Replace the main zone's cards with `cards` (name -> card); the nav marks the page.

    Leaving a page ends its refresh loop here, so no loop outlives its page to draw cards on
    the next one; a live page starts its loop again after showing itself."""
    stop_refresh(q)
    clear_notification(q)
    for name in q.client[MAIN_CARDS] or []:
        del q.page[name]
    for name, card in cards.items():
        q.page[name] = card
    q.client[MAIN_CARDS] = list(cards)
    q.page["nav"].value = f"#{q.args['#']}" if q.args["#"] else "#home"


def update(q: Q, cards: dict, keep: tuple[str, ...] = ()) -> None:
    """Re-render the live part of the shown page: `cards` replace its main-zone cards except
    those in `keep`; a card the page no longer has (e.g. "no points yet") is deleted. Every
    card is recorded, so the next page removes all of them."""
    shown = q.client[MAIN_CARDS] or []
    for name in shown:
        if name not in cards and name not in keep:
            del q.page[name]
    for name, card in cards.items():
        q.page[name] = card
    q.client[MAIN_CARDS] = [n for n in shown if n in keep] + list(cards)


def clear_notification(q: Q) -> None:
    """Take down a page's notification bar (e.g. a download's), so it does not re-show on the
    page the user goes to next."""
    if q.client[NOTIFICATION_SHOWN]:
        q.page["meta"].notification_bar = None
        q.client[NOTIFICATION_SHOWN] = False


def stop_refresh(q: Q) -> None:
    q.client.page_key = None  # a loop between its sleep and its check sees this
    task = q.client.refresh_task
    if task is not None and not task.done():
        task.cancel()
    q.client.refresh_task = None


def message(text: str, kind: str = "info", name: str | None = None) -> ui.Component:
    """A message bar showing `text` exactly (no markdown: names and rules keep their dots)."""
    return ui.message_bar(type=kind, text=safe_text.plain(text), name=name)
