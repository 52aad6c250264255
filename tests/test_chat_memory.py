"""On a GPU, the chat refuses to load a model that does not fit in the free memory, and says
why. No GPU here: the free-memory probe (hardware, not transformers) is replaced."""

from __future__ import annotations

import asyncio

import pytest
from conftest import load_cfg, pattern_rows, tiny_config

from llm_studio.models import chat as chat_model
from llm_studio.models.chat import GIB, memory_refusal, weights_bytes


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A finished tiny experiment with its checkpoint, registered in a store."""
    from llm_studio.experiments.folder import ExperimentStatus
    from llm_studio.store import DatasetRecord, ExperimentRecord, Store
    from llm_studio.training.loop import run_experiment

    workdir = tmp_path_factory.mktemp("chat_memory")
    csv = workdir / "pattern.csv"
    pattern_rows(16).to_csv(csv, index=False)
    out = workdir / "output" / "user" / "fits-nowhere"
    data = tiny_config(tiny_model_dir, csv, out)
    data["experiment_name"] = "fits-nowhere"
    cfg = load_cfg(data)
    run_experiment(cfg, ExperimentStatus(state="running"))
    store = Store(workdir / "data" / "dbs" / "llmstudio.db")
    dataset = store.add_dataset(
        DatasetRecord(
            name="pattern",
            path=str(workdir),
            config_file=str(workdir / "dataset.yaml"),
            problem_type=cfg.problem_type,
            train_dataframe=str(csv),
        )
    )
    record = store.add_experiment(
        ExperimentRecord(
            name="fits-nowhere",
            dataset_id=dataset.id,
            path=str(out),
            problem_type=cfg.problem_type,
            config_file=str(out / "cfg.yaml"),
        )
    )
    return store, record


def test_refusal_names_the_free_and_needed_memory():
    assert memory_refusal(8 * GIB, 2 * GIB) is None
    assert memory_refusal(2 * GIB, 2 * GIB) is None
    message = memory_refusal(int(0.5 * GIB), int(3.25 * GIB))
    assert "0.50 GiB free" in message and "3.25 GiB" in message


def test_the_need_is_the_weights_in_float32(trained):
    from transformers import AutoModelForCausalLM

    from llm_studio.experiments.folder import ExperimentFolder

    checkpoint = ExperimentFolder(trained[1].path).checkpoint_dir
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    values = sum(t.numel() for t in model.state_dict().values())
    assert weights_bytes(checkpoint) == values * 4


def test_loading_on_a_full_gpu_is_refused_before_reading_the_weights(trained, monkeypatch):
    from llm_studio.config.settings import ConfigError

    monkeypatch.setattr(chat_model, "free_gpu_memory", lambda device: 1024)
    with pytest.raises(ConfigError, match=r"GPU has 0.00 GiB free.*needs about"):
        chat_model.ChatSession.from_experiment(trained[1].path, "cuda")


@pytest.mark.parametrize("backbone_dtype, bytes_per_value", [("bfloat16", 2), ("float32", 4)])
def test_the_chat_loads_in_the_training_dtype_and_needs_its_memory(
    trained, monkeypatch, tmp_path, backbone_dtype, bytes_per_value
):
    """On a GPU the chat computes as training did: a bfloat16 experiment needs half the memory
    of a float32 one. Just too little is refused; just enough passes the check (and then fails
    here only because no GPU exists)."""
    import shutil

    import yaml
    from transformers import AutoModelForCausalLM

    from llm_studio.config.settings import ConfigError
    from llm_studio.experiments.folder import ExperimentFolder

    folder = ExperimentFolder(shutil.copytree(trained[1].path, tmp_path / "copy"))
    cfg = yaml.safe_load(folder.cfg_yaml.read_text())
    cfg["architecture"]["backbone_dtype"] = backbone_dtype
    folder.cfg_yaml.write_text(yaml.safe_dump(cfg))
    model = AutoModelForCausalLM.from_pretrained(folder.checkpoint_dir)
    values = sum(t.numel() for t in model.state_dict().values())
    needed = int(values * bytes_per_value * chat_model.MEMORY_MARGIN)

    monkeypatch.setattr(chat_model, "free_gpu_memory", lambda device: needed - 1)
    with pytest.raises(ConfigError, match="needs about"):
        chat_model.ChatSession.from_experiment(folder.path, "cuda")
    monkeypatch.setattr(chat_model, "free_gpu_memory", lambda device: needed)
    with pytest.raises(Exception) as past_the_check:
        chat_model.ChatSession.from_experiment(folder.path, "cuda")
    assert "needs about" not in str(past_the_check.value)


class Card:
    """Enough of a Wave card reference: `data += row` appends a row, as on a real page."""

    class Rows(list):
        def __iadd__(self, row):
            self.append(list(row))
            return self

    def __init__(self):
        self.data = Card.Rows()
        self.generating = False


class Page(dict):
    async def save(self) -> None:
        pass


class FakeQ:
    def __init__(self, store, record):
        from h2o_wave import ui
        from h2o_wave.core import Expando

        from llm_studio.ui import layout
        from llm_studio.ui.pages import experiment_chat as page
        from llm_studio.ui.state import ClientState

        self.client = Expando()
        self.client.state = ClientState(store=store)
        self.client.experiment_id, self.client.experiment_tab = record.id, "chat"
        self.client[layout.MAIN_CARDS] = ["experiment", page.CHAT_CARD, page.STATUS_CARD]
        self.args = Expando()
        self.page = Page(
            {
                page.CHAT_CARD: Card(),
                page.STATUS_CARD: ui.form_card(box="main", items=[ui.text("")]),
            }
        )

    async def run(self, fn, *args):
        return fn(*args)


def test_chat_tab_says_why_a_full_gpu_refuses_the_model(trained, monkeypatch):
    from llm_studio.ui.pages import experiment_chat as page

    store, record = trained

    class FinishedRunner:
        def state(self, record):
            return "finished"

    monkeypatch.setattr(page, "app_runner", lambda: FinishedRunner())
    monkeypatch.setattr(page, "_pick_device", lambda: "cuda")
    monkeypatch.setattr(chat_model, "free_gpu_memory", lambda device: 1024)

    q = FakeQ(store, record)
    q.args[page.CHAT_CARD] = "Repeat red 2 times."

    async def ask() -> None:
        await page.chat_ask(q)
        page.release(q.client.chat_state)

    asyncio.run(ask())
    card = q.page[page.CHAT_CARD]
    answer = card.data[-1][0]
    assert "The model could not be loaded: the GPU has 0.00 GiB free" in answer, answer
    assert "needs about" in answer and card.generating is False
    status = q.page[page.STATUS_CARD].items[0].message_bar
    assert status.type == "error" and "the GPU has 0.00 GiB free" in status.text, status.text
    assert q.client.chat_state.session is None
