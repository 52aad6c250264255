"""The experiment's Chat tab: talk to the trained checkpoint in its training prompt format.

One loaded model per browser client, loaded off the event loop with the first question and
released as soon as the client shows another page or tab. Answers stream in as they are
generated (a generation thread feeds a `TextIteratorStreamer`; the page is saved every ~0.2 s),
and the chatbot's stop button ends a generation at once through a stopping criterion that
watches a `threading.Event`. torch and transformers are imported only when a model loads.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import gc
import logging
import sys
import threading
import time
import weakref

from h2o_wave import Q, data, on, ui

from llm_studio.config.problem_types import PROBLEM_TYPE_LABELS
from llm_studio.config.settings import ConfigError, field_types, spec_of
from llm_studio.config.yaml_io import load_config
from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.store import resolve
from llm_studio.ui import layout
from llm_studio.ui.pages import experiment_view
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
    if not hasattr(cfg.prediction, "max_length_inference"):
        label = PROBLEM_TYPE_LABELS.get(cfg.problem_type, cfg.problem_type)
        return (
            f"Chat is for text generation; this {label} experiment predicts labels or values, "
            "not text."
        )
    state = app_runner().state(record)
    if state in ("queued", "running"):
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
        STATUS_CARD: ui.form_card(
            box="main", items=[ui.text("The model loads with the first question.")]
        ),
        SETTINGS_CARD: ui.form_card(
            box="main", title="Prediction settings", items=settings_widgets(cfg.prediction)
        ),
    }


def chatbot() -> ui.ChatbotCard:
    return ui.chatbot_card(
        box=ui.box("main", height="460px"),
        name=CHAT_CARD,
        data=data(fields="content from_user", t="list"),
        placeholder="Ask the model (the first question loads it)",
        events=["stop"],
    )


def settings_widgets(prediction) -> list:
    hints = field_types(type(prediction))
    fields = {f.name: f for f in dataclasses.fields(prediction)}
    items: list = []
    for key in CHAT_SETTINGS:
        spec, value, kind = spec_of(fields[key]), getattr(prediction, key), hints[key]
        common = dict(name=f"chat__{key}", label=key, tooltip=spec.tip if spec else None)
        low, high = spec.range if spec and spec.range else (0, 4096)
        if kind is bool:
            items.append(ui.toggle(value=bool(value), trigger=True, **common))
        elif kind is int:
            items.append(ui.spinbox(min=low, max=high, step=1, value=value, trigger=True, **common))
        else:
            step = spec.step if spec and spec.step else 0.05
            items.append(
                ui.slider(min=low, max=high, step=step, value=value, trigger=True, **common)
            )
    items.append(ui.buttons([ui.button(name="chat_clear", label="Clear history")]))
    return items


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
        self.loading = False
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


def _status(q: Q, text: str) -> None:
    q.page[STATUS_CARD].items[0].text.content = text


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
    _status(q, f"{key} set to {getattr(st.prediction, key)}.")


@on("chat_clear")
async def chat_clear(q: Q) -> None:
    st = current_state(q)
    if st is None or st.generating:
        return
    if st.session is not None:
        st.session.history.clear()
    q.page[CHAT_CARD] = chatbot()  # a card's data buffer cannot be reassigned
    _status(q, "History cleared.")


@on(f"{CHAT_CARD}.stop")
async def chat_stop(q: Q) -> None:
    st = current_state(q, create=False)
    if st is not None and st.stop_event is not None:
        st.stop_event.set()


@on(CHAT_CARD)
async def chat_ask(q: Q) -> None:
    st = current_state(q)
    question = str(q.args[CHAT_CARD] or "").strip()
    if st is None:
        # The client no longer shows this experiment's chat (e.g. a late message).
        return
    card = q.page[CHAT_CARD]
    if not question:
        return
    if st.generating or st.loading:
        _status(q, "Wait for the current answer, or stop it, before asking again.")
        return
    card.data += [question, True]
    card.data += ["", False]
    card.generating = True
    if st.session is None:
        st.loading = True
        card.data[-1] = ["*Loading the model…*", False]
        _status(q, "Loading the model…")
        await q.page.save()
        try:
            session, device = await _load(q, st)
        finally:
            st.loading = False
        if session is None:
            card.generating = False
            return
        if st.released:  # the client left while the model loaded
            return
        st.session = session
        card.data[-1] = ["", False]
        _status(q, f"Model loaded on {device}.")
    await _stream_answer(q, st, question)


async def _load(q: Q, st: ChatState):
    store = client_state(q).store
    record = store.get_experiment(st.experiment_id)
    try:
        device = await q.run(_pick_device)
        if device == "cuda":
            busy = [
                r.name
                for r in store.list_experiments()
                if r.id != record.id and app_runner().state(r) == "running"
            ]
            if busy:
                raise ConfigError(
                    f"the GPU is busy with experiment {', '.join(busy)}; chat when it finishes"
                )
        session = await q.run(_load_session, str(resolve(record.path)), device)
    except Exception as exc:  # any load failure is shown in the chat, the page stays usable
        log.warning("chat model of %s not loaded: %s", record.path, exc)
        q.page[CHAT_CARD].data[-1] = [f"The model could not be loaded: {exc}", False]
        _status(q, "The model could not be loaded.")
        return None, None
    session.prediction = st.prediction
    return session, device


def _pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_session(path: str, device: str):
    from llm_studio.models.chat import ChatSession

    return ChatSession.from_experiment(path, device)


async def _stream_answer(q: Q, st: ChatState, question: str) -> None:
    from transformers import TextIteratorStreamer  # loaded with the model: no start-up cost

    card = q.page[CHAT_CARD]
    session = st.session
    stop = threading.Event()
    st.stop_event = stop
    st.generating = True
    card.generating = True
    _status(q, "Generating…")
    await q.page.save()

    streamer = TextIteratorStreamer(session.tokenizer, skip_prompt=True, skip_special_tokens=True)
    pieces: list[str] = []
    result: dict = {}
    tokens = [0]

    def generate() -> None:
        try:
            result["answer"] = ask_with_stop(session, question, streamer, stop, tokens)
        except BaseException as exc:  # shown in the chat; the streamer must still end
            result["error"] = exc
            streamer.end()

    def consume() -> None:
        for text in streamer:
            pieces.append(text)

    started = time.monotonic()
    threads = [threading.Thread(target=f, daemon=True) for f in (generate, consume)]
    for thread in threads:
        thread.start()
    shown = ""
    try:
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(SAVE_EVERY)
            text = "".join(pieces)
            if text != shown and _shows_chat(q.client, st):
                shown = text
                card.data[-1] = [text, False]
                await q.page.save()
    finally:
        st.generating = False
        st.stop_event = None
    if st.released or not _shows_chat(q.client, st):
        return
    seconds = time.monotonic() - started
    card.generating = False
    if "error" in result:
        card.data[-1] = [f"{shown}\n\n*Generation failed: {result['error']}*", False]
        _status(q, "Generation failed.")
    else:
        # The final text is exactly ChatSession.ask's answer (stop texts cut, stripped).
        card.data[-1] = [result["answer"], False]
        done = "Stopped" if stop.is_set() else "Answered"
        _status(q, f"{done} after {tokens[0]} tokens in {seconds:.1f} s.")
    await q.page.save()


def ask_with_stop(session, question: str, streamer, stop: threading.Event, tokens: list) -> str:
    """`session.ask`, with a stopping criterion that ends generation once `stop` is set.

    ChatSession.ask builds the prompt with the checkpoint's chat template, cuts at the stop
    texts and keeps the history; the criterion is added by wrapping the model's `generate` for
    this one call, so the answer is exactly what ask() gives.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnEvent(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            tokens[0] += 1
            return torch.full(
                (input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device
            )

    model = session.model
    model.generate = functools.partial(
        model.generate, stopping_criteria=StoppingCriteriaList([StopOnEvent()])
    )
    try:
        return session.ask(question, streamer=streamer)
    finally:
        del model.generate
