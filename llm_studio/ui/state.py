"""Per-browser-session state, as one typed object instead of loose string keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from h2o_wave import Q

from llm_studio.store.db import Store


@dataclass
class ClientState:
    store: Store
    session_secrets: dict[str, str] = field(default_factory=dict)  # "do not save" credentials
    wizard: dict = field(default_factory=dict)  # the import wizard's progress


def client_state(q: Q) -> ClientState:
    if q.client.state is None:
        q.client.state = ClientState(store=Store())
    return q.client.state


_runner = None


def app_runner():
    """The one runner of this app process: it owns the experiments' child processes."""
    global _runner
    if _runner is None:
        from llm_studio.runner import Runner

        _runner = Runner(Store())
        _runner.reattach()
    return _runner
