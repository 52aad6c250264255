"""The live pages' refresh (keep_fresh) does its blocking work in a worker thread: while it waits
on the runner (busy renaming or stopping for another user) or reads experiment folders, the
app's event loop goes on serving everyone else's clicks."""

from __future__ import annotations

import asyncio
import threading
import time

from h2o_wave import ui
from h2o_wave.core import Expando
from h2o_wave.server import Query

from llm_studio.config.problem_types import CausalLMConfig
from llm_studio.config.yaml_io import save_config
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.runner import Runner
from llm_studio.store import DatasetRecord, ExperimentRecord, Store, experiment_dir
from llm_studio.ui import state
from llm_studio.ui.pages import experiments

BLOCKED_S = 3.0


class RecordedPage(dict):
    """q.page without a waved server: the cards by name, and how often they were sent."""

    saves = 0

    async def save(self) -> None:
        self.saves += 1


def query(page: RecordedPage) -> Query:
    return Query(
        site={"/client": page}, mode="unicast", auth=None, client_id="client", route="/",
        app_state=Expando(), user_state=Expando(), client_state=Expando(), args=Expando(),
        events=Expando(), headers={},
    )  # fmt: skip


def test_list_refresh_waits_for_a_busy_runner_off_the_event_loop(tmp_path, monkeypatch):
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path))
    store = Store()
    dataset = store.add_dataset(
        DatasetRecord(name="d", path=str(tmp_path), config_file="",
                      problem_type="text_causal_language_modeling", train_dataframe="t.csv")
    )  # fmt: skip
    folder = ExperimentFolder(experiment_dir("live"))
    save_config(CausalLMConfig(experiment_name="live"), folder.cfg_yaml)
    folder.write_status(ExperimentStatus(state="finished", progress=1.0))
    store.add_experiment(
        ExperimentRecord(name="live", dataset_id=dataset.id, path=str(folder.path),
                         problem_type="text_causal_language_modeling",
                         config_file=str(folder.cfg_yaml))
    )  # fmt: skip
    runner = Runner(store, gpu_count=0)
    monkeypatch.setattr(state, "_runner", runner)
    monkeypatch.setattr(experiments, "REFRESH_SECONDS", 0.1)
    page = RecordedPage()
    page["experiments"] = ui.form_card(box="main", items=[ui.table(name="t", columns=[], rows=[])])
    q = query(page)

    def busy_runner() -> None:  # e.g. a rename moving a large folder holds the runner's lock
        with runner._lock:
            locked.set()
            time.sleep(BLOCKED_S)

    locked = threading.Event()

    async def scenario() -> float:
        holder = threading.Thread(target=busy_runner)
        holder.start()
        await asyncio.to_thread(locked.wait)
        q.client.page_key = "experiments"
        experiments.keep_fresh(
            q,
            "experiments",
            lambda: experiments.experiment_rows(store),
            lambda rows: experiments._show_rows(q, rows),
        )
        longest, last = 0.0, time.monotonic()
        while holder.is_alive():  # the loop's other work: how long does it wait at most?
            await asyncio.sleep(0.02)
            now = time.monotonic()
            longest, last = max(longest, now - last), now
        for _ in range(200):  # the refresh goes on once the runner is free again
            if page.saves:
                break
            await asyncio.sleep(0.05)
        q.client.page_key = None
        await asyncio.wait_for(q.client.refresh_task, 10)
        return longest

    longest = asyncio.run(scenario())
    assert longest < BLOCKED_S / 2, f"the event loop stalled {longest:.1f} s"
    assert page.saves >= 1
    rows = page["experiments"].items[0].table.rows
    assert [r.name for r in rows] == [str(store.get_experiment_by_name("live").id)]
    assert "live" in rows[0].cells[0] and rows[0].cells[6] == "finished"
