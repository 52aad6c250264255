"""The app at "/": set up each browser session, then route to the page handlers with @on."""

from __future__ import annotations

import asyncio
import logging

from h2o_wave import Q, app, run_on

from llm_studio.ui import layout
from llm_studio.ui.pages import (  # noqa: F401 (handlers)
    datasets,
    experiment_chat,
    experiment_compare,
    experiment_create,
    experiment_view,
    experiments,
    home,
    settings,
)
from llm_studio.ui.state import client_state

log = logging.getLogger("llm_studio.ui")


async def startup() -> None:
    try:  # before any page can start an import: finish or undo what a crash interrupted
        from llm_studio.store import Store
        from llm_studio.store.recovery import recover

        for line in recover(Store()):
            log.info("recovery: %s", line)
    except Exception as exc:  # the app stays usable; the next start-up tries again
        log.warning("recovery at start-up failed: %s", exc)
    asyncio.ensure_future(_poll_runner())
    try:
        from llm_studio.ui.defaults import ensure_default_datasets

        ensure_default_datasets()
    except Exception as exc:  # the app stays usable without the demo datasets
        log.warning("default datasets not created: %s", exc)


async def _poll_runner() -> None:
    """Start queued experiments and notice finished or dead ones, even with no page open."""
    from llm_studio.ui.state import app_runner

    while True:
        await asyncio.sleep(2)
        try:
            await asyncio.get_running_loop().run_in_executor(None, app_runner().poll)
        except Exception as exc:  # keep polling; the next round may succeed
            log.warning("runner poll failed: %s", exc)


@app("/", on_startup=startup)
async def serve(q: Q) -> None:
    if not q.client.initialized:
        state = client_state(q)
        q.client.theme = state.store.get_setting("theme", "light")
        layout.frame(q)
        q.client.initialized = True
    if not await run_on(q):
        await home.home(q)
    await q.page.save()
