"""One chat answer generated off the event loop and read as it arrives.

A generation thread runs `ChatSession.ask` into a `TextIteratorStreamer`; a reader thread
collects the text pieces and wakes the event loop on each (`AnswerStream.arrived`). A
`threading.Event` ends the generation at once through a stopping criterion. torch and
transformers are imported only here, when an answer is generated, never at start-up.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Any


class AnswerStream:
    """The answer to `question` from `session`, generated in background threads.

    `asked` is the monotonic time the question was asked: `first_words` is how long after it
    the first text arrived. Once no thread is `alive()`, either `answer` (exactly what
    `session.ask` returns) or `error` is set.
    """

    def __init__(self, session: Any, question: str, stop: threading.Event, asked: float):
        from transformers import TextIteratorStreamer  # loaded with the model: no start-up cost

        self.session, self.question, self.stop, self.asked = session, question, stop, asked
        self.streamer = TextIteratorStreamer(
            session.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        self.pieces: list[str] = []
        self.answer: str | None = None
        self.error: BaseException | None = None
        self.tokens = [0]  # generation steps taken, counted by the stopping criterion
        self.first_words: float | None = None
        self.arrived = asyncio.Event()  # new text (or the end): save at once, not at a tick
        self._loop = asyncio.get_running_loop()
        self._threads = [
            threading.Thread(target=f, daemon=True) for f in (self._generate, self._consume)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def text(self) -> str:
        """The text streamed so far."""
        return "".join(self.pieces)

    def _generate(self) -> None:
        try:
            self.answer = ask_with_stop(
                self.session, self.question, self.streamer, self.stop, self.tokens
            )
        except BaseException as exc:  # shown in the chat; the streamer must still end
            self.error = exc
            self.streamer.end()

    def _consume(self) -> None:
        for text in self.streamer:
            if text and self.first_words is None:
                self.first_words = time.monotonic() - self.asked
            self.pieces.append(text)
            self._loop.call_soon_threadsafe(self.arrived.set)
        self._loop.call_soon_threadsafe(self.arrived.set)


def ask_with_stop(
    session: Any, question: str, streamer: Any, stop: threading.Event, tokens: list[int]
) -> str:
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
