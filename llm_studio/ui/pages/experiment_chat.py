"""The experiment's Chat tab: talk to the trained checkpoint in its training prompt format.

One loaded model per browser client. It starts loading off the event loop as soon as the tab
opens (the status card shows a progress bar, then "Model ready"), so the first question only
waits for generation; a question asked while it loads waits for it. The model is released as
soon as the client shows another page or tab. Answers stream in as they are generated (a
generation thread feeds a `TextIteratorStreamer`, see `llm_studio.ui.chat_stream`; the page is
saved as soon as the first words arrive, then every ~0.2 s), and the chatbot's stop button ends
a generation at once through a stopping criterion that watches a `threading.Event`. torch and
transformers are imported only when a model loads.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import gc
import logging
import sys
import threading
import time
import weakref

from h2o_wave import Q, data, on, ui

from llm_studio.config.problem_types import problem_type_of
from llm_studio.config.settings import ConfigError, field_types, spec_of
from llm_studio.config.yaml_io import load_config
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.experiments.status import ACTIVE, RunState
from llm_studio.store import resolve
from llm_studio.ui import layout, safe_text
from llm_studio.ui.chat_stream import AnswerStream
from llm_studio.ui.pages import experiment_view
from llm_studio.ui.settings_form import setting_label
from llm_studio.ui.state import app_runner, client_state

log = logging.getLogger("llm_studio.ui.chat")

CHAT_CARD = "chat_bot"
STATUS_CARD = "chat_status"
SETTINGS_CARD = "chat_settings"
# Prediction settings the chat can change, in the order shown.
CHAT_SETTINGS = (
    "max_length_inference",
    "min_length_inference",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "num_history",
)
SAVE_EVERY = 0.2  # seconds between page saves while an answer streams in
WATCH_EVERY = 0.5  # seconds between checks that the client still shows the chat tab


# --- what the tab shows ---


def unavailable_reason(record) -> str | None:
    """Why this experiment cannot be chatted with, or None when it can."""
    try:
        cfg, _ = load_config(_config_file(record))
    except (ConfigError, TypeError) as exc:
        return f"Chat is unavailable: the experiment's config cannot be read ({exc})."
    problem_type = problem_type_of(cfg)
    if not problem_type.generates_text:
        return (
            f"Chat is for text generation; this {problem_type.label} experiment predicts labels "
            "or values, not text."
        )
    state = app_runner().state(record)
    if state in ACTIVE:
        return f"Chat becomes available when the experiment has finished (it is {state})."
    if not (ExperimentFolder(resolve(record.path)).checkpoint_dir / "config.json").is_file():
        if getattr(cfg.training, "save_checkpoint", "") == "disable":
            return "No checkpoint to chat with: this experiment ran with save_checkpoint 'disable'."
        return f"No checkpoint to chat with: the experiment {state} before saving one."
    return None


def _config_file(record):
    return resolve(record.config_file or ExperimentFolder(resolve(record.path)).cfg_yaml)


def chat_cards(record) -> dict:
    reason = unavailable_reason(record)
    if reason:
        return {
            "experiment_body": ui.form_card(box="main", items=[layout.message(reason, "warning")])
        }
    cfg, _ = load_config(_config_file(record))
    return {
        CHAT_CARD: chatbot(),
        # The tab starts loading the model as it opens (chat_tab_opened).
        STATUS_CARD: ui.form_card(box="main", items=loading_items()),
        SETTINGS_CARD: ui.form_card(
            box="main", title="Prediction settings", items=settings_widgets(cfg.prediction)
        ),
    }


def chatbot() -> ui.ChatbotCard:
    return ui.chatbot_card(
        box=ui.box("main", height="460px"),
        name=CHAT_CARD,
        data=data(fields="content from_user", t="list"),
        placeholder="Ask the model",
        events=["stop"],
    )


def settings_widgets(prediction) -> list:
    hints = field_types(type(prediction))
    fields = {f.name: f for f in dataclasses.fields(prediction)}
    items: list = []
    for key in CHAT_SETTINGS:
        spec, value, kind = spec_of(fields[key]), getattr(prediction, key), hints[key]
        label = setting_label(key) if spec else key
        name, tip = f"chat__{key}", spec.tip if spec else None
        low, high = spec.range if spec and spec.range else (0, 4096)
        if kind is bool:
            items.append(
                ui.toggle(name=name, label=label, tooltip=tip, value=bool(value), trigger=True)
            )
        elif kind is int:
            items.append(
                ui.spinbox(
                    name=name,
                    label=label,
                    tooltip=tip,
                    min=low,
                    max=high,
                    step=1,
                    value=value,
                    trigger=True,
                )
            )
        else:
            step = spec.step if spec and spec.step else 0.05
            items.append(
                ui.slider(
                    name=name,
                    label=label,
                    tooltip=tip,
                    min=low,
                    max=high,
                    step=step,
                    value=value,
                    trigger=True,
                )
            )
    items.append(ui.buttons([ui.button(name="chat_clear", label="Clear history")]))
    return items


def loading_items(note: str = "") -> list:
    caption = "A question asked now is answered once it has loaded."
    return [
        ui.progress(
            label="Loading the model",
            caption=f"{note} {caption}" if note else caption,
            name="chat_loading",
        )
    ]


experiment_view.TAB_CARDS["chat"] = chat_cards


# --- one chat per client ---


class ChatState:
    """The client's chat: its prediction settings, the loaded session and the running answer."""

    def __init__(self, experiment_id: int, cards_token: list, prediction):
        self.experiment_id = experiment_id
        # layout.show makes a new list of main cards for every page it shows: while this very
        # list is the client's, the client still shows the chat tab this state belongs to.
        self.cards_token = cards_token
        self.prediction = prediction
        self.session = None
        self.load_task: asyncio.Task | None = None
        self.load_error: str | None = None
        self.busy = False  # a question is being answered (or waits for the model)
        self.generating = False
        self.stop_event: threading.Event | None = None
        self.released = False


def _shows_chat(client, st: ChatState) -> bool:
    return (
        client.chat_state is st
        and client[layout.MAIN_CARDS] is st.cards_token
        and client.experiment_id == st.experiment_id
        and client.experiment_tab == "chat"
    )


def release(st: ChatState) -> None:
    """Stop any answer and drop the model; its memory goes with the last reference."""
    st.released = True
    if st.stop_event is not None:
        st.stop_event.set()
    had_model = st.session is not None
    st.session = None
    if had_model:
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.info("chat model of experiment %s released", st.experiment_id)


def current_state(q: Q, create: bool = True) -> ChatState | None:
    """The client's chat state for the chat tab it shows; a stale one is released first."""
    st = q.client.chat_state
    if st is not None and not _shows_chat(q.client, st):
        release(st)
        q.client.chat_state = st = None
    if st is not None or not create:
        return st
    cards = q.client[layout.MAIN_CARDS]
    if q.client.experiment_tab != "chat" or not cards or CHAT_CARD not in cards:
        return None
    record = client_state(q).store.get_experiment(q.client.experiment_id)
    if record is None or unavailable_reason(record):
        return None
    cfg, _ = load_config(_config_file(record))
    st = ChatState(record.id, cards, copy.deepcopy(cfg.prediction))
    q.client.chat_state = st
    _watch(q, st)
    return st


def _watch(q: Q, st: ChatState) -> None:
    """Release the model once the client shows anything else (or is gone)."""
    client_ref = weakref.ref(q.client)  # no strong reference: a closed client is collected

    async def loop() -> None:
        while not st.released:
            await asyncio.sleep(WATCH_EVERY)
            client = client_ref()
            if client is None or not _shows_chat(client, st):
                release(st)
                if client is not None and client.chat_state is st:
                    client.chat_state = None
                return

    asyncio.ensure_future(loop())


def _status(q: Q, text: str, kind: str | None = None) -> None:
    item = layout.message(text, kind) if kind else ui.text(safe_text.plain(text))
    q.page[STATUS_CARD].items = [item]


def _note(q: Q, st: ChatState, text: str) -> None:
    """Say `text` in the status card; while the model loads, under its progress bar."""
    if st.session is None and st.load_task is not None and not st.load_task.done():
        q.page[STATUS_CARD].items = loading_items(text)
    else:
        _status(q, text)


def _answer(q: Q, text: str) -> None:
    """Replace the last chatbot message (the answer in progress) with `text`, shown exactly."""
    q.page[CHAT_CARD].data[-1] = [safe_text.plain(text), False]


# --- loading, as soon as the tab opens ---


def chat_tab_opened(q: Q) -> None:
    """The Chat tab is shown: start loading its model in the background."""
    st = current_state(q)
    if st is not None and st.session is None and st.load_task is None:
        st.load_task = asyncio.ensure_future(_load_into(q, st))


async def _load_into(q: Q, st: ChatState) -> None:
    """Load the model off the event loop into `st`; the status card tells how it went."""
    started = time.monotonic()
    session, device, error = await _load(q, st)
    if st.released:  # the client left while the model loaded: let it go
        return
    if session is None:
        st.load_error = error
        _status(q, f"The model could not be loaded: {error}", "error")
    else:
        session.prediction = st.prediction
        st.session = session
        seconds = time.monotonic() - started
        _status(q, f"Model ready (loaded on {device} in {seconds:.1f} s): ask away.")
    if _shows_chat(q.client, st):
        await q.page.save()


experiment_view.TAB_OPENED["chat"] = chat_tab_opened


# --- handlers ---


@on("chat__{key}")
async def chat_setting(q: Q, key: str) -> None:
    st = current_state(q)
    if st is None or key not in CHAT_SETTINGS:
        return
    value = q.args[f"chat__{key}"]
    kind = field_types(type(st.prediction))[key]
    try:
        setattr(st.prediction, key, kind(round(value) if kind is int else value))
    except (TypeError, ValueError):
        return
    if st.session is not None:
        st.session.prediction = st.prediction
    spec = spec_of({f.name: f for f in dataclasses.fields(st.prediction)}[key])
    label = setting_label(key) if spec else key
    _note(q, st, f"{label} set to {getattr(st.prediction, key)}.")


@on("chat_clear")
async def chat_clear(q: Q) -> None:
    st = current_state(q)
    if st is None or st.busy:
        return
    if st.session is not None:
        st.session.history.clear()
    q.page[CHAT_CARD] = chatbot()  # a card's data buffer cannot be reassigned
    _note(q, st, "History cleared.")


@on(f"{CHAT_CARD}.stop")
async def chat_stop(q: Q) -> None:
    st = current_state(q, create=False)
    if st is not None and st.stop_event is not None:
        st.stop_event.set()


@on(CHAT_CARD)
async def chat_ask(q: Q) -> None:
    asked = time.monotonic()
    st = current_state(q)
    question = str(q.args[CHAT_CARD] or "").strip()
    if st is None:
        # The client no longer shows this experiment's chat (e.g. a late message).
        return
    card = q.page[CHAT_CARD]
    if not question:
        return
    if st.busy:
        _status(q, "Wait for the current answer, or stop it, before asking again.")
        return
    st.busy = True
    waited = ""
    try:
        card.data += [safe_text.plain(question), True]
        card.data += ["", False]
        card.generating = True
        if st.session is None:
            if st.load_task is None or st.load_task.done():  # not started, or failed: again
                st.load_error = None
                _status(q, "Loading the model…")
                st.load_task = asyncio.ensure_future(_load_into(q, st))
            _answer(q, "Loading the model…")
            await q.page.save()
            await asyncio.shield(st.load_task)
            if st.released:
                return
            if st.session is None:
                card.generating = False
                _answer(q, f"The model could not be loaded: {st.load_error}")
                await q.page.save()
                return
            card.data[-1] = ["", False]
            waited = " (it waited for the model to load)"
        await _stream_answer(q, st, question, asked, waited)
    finally:
        st.busy = False


async def _load(q: Q, st: ChatState):
    """(session, device, None), or (None, None, why) when the model cannot be loaded."""
    store = client_state(q).store
    record = store.get_experiment(st.experiment_id)
    if record is None:
        return None, None, "This experiment was deleted."
    try:
        device = await q.run(_pick_device)
        if device == "cuda":
            busy = [
                r.name
                for r in store.list_experiments()
                if r.id != record.id and app_runner().state(r) == RunState.RUNNING
            ]
            if busy:
                raise ConfigError(
                    f"the GPU is busy with experiment {', '.join(busy)}; chat when it finishes"
                )
        session = await q.run(_load_session, str(resolve(record.path)), device)
    except Exception as exc:  # any load failure is shown, the page stays usable
        log.warning("chat model of %s not loaded: %s", record.path, exc)
        return None, None, str(exc)
    log.info("chat model of %s loaded on %s", record.path, device)
    return session, device, None


def _pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_session(path: str, device: str):
    from llm_studio.models.chat import ChatSession

    session = ChatSession.from_experiment(path, device)
    session.warm_up()  # the first question then pays for generation only
    return session


async def _stream_answer(q: Q, st: ChatState, question: str, asked: float, waited: str) -> None:
    """Generate the answer to `question` (asked at monotonic time `asked`) into the chatbot;
    `waited` says (in the final status) why the first words took longer, or is empty."""
    card = q.page[CHAT_CARD]
    stop = threading.Event()
    st.stop_event = stop
    st.generating = True
    card.generating = True
    stream = AnswerStream(st.session, question, stop, asked)
    started = time.monotonic()
    stream.start()
    # Shown while the model already reads the question: the first words do not wait for it.
    _status(q, "Generating…")
    await q.page.save()
    try:
        shown = await _show_as_it_streams(q, st, stream)
    finally:
        st.generating = False
        st.stop_event = None
    if st.released or not _shows_chat(q.client, st):
        return
    card.generating = False
    seconds = time.monotonic() - started
    if stream.error is not None:
        _answer(q, f"{shown}\n\nGeneration failed: {stream.error}")
        _status(q, "Generation failed.")
    else:
        # The final text is exactly ChatSession.ask's answer (stop texts cut, stripped).
        card.data[-1] = [stream.answer, False]
        done = "Stopped" if stop.is_set() else "Answered"
        first = (
            f"; the first words came {stream.first_words:.2f} s after the question{waited}"
            if stream.first_words is not None
            else ""
        )
        _status(q, f"{done} after {stream.tokens[0]} tokens in {seconds:.1f} s{first}.")
    await q.page.save()


async def _show_as_it_streams(q: Q, st: ChatState, stream: AnswerStream) -> str:
    """Show the answer's text in the chatbot while it is generated; returns the text shown."""
    card = q.page[CHAT_CARD]
    shown, saved_at = "", 0.0
    while stream.alive():
        try:
            await asyncio.wait_for(stream.arrived.wait(), SAVE_EVERY)
        except TimeoutError:
            continue
        stream.arrived.clear()
        # The first words go out at once; later ones at most every SAVE_EVERY seconds.
        await asyncio.sleep(max(0.0, saved_at + SAVE_EVERY - time.monotonic()))
        text = stream.text()
        if text != shown and _shows_chat(q.client, st):
            shown = text
            card.data[-1] = [text, False]
            await q.page.save()
            saved_at = time.monotonic()
    return shown
