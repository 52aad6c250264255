"""Settings: credentials (kept by the chosen handler, never shown back) and user defaults."""

from __future__ import annotations

import os

from h2o_wave import Q, on, ui

from llm_studio.config.problem_types import DEFAULT_PROBLEM_TYPE, PROBLEM_TYPE_LABELS
from llm_studio.connectors import local_roots
from llm_studio.ui import layout, secrets
from llm_studio.ui.datasets_service import local_roots_note
from llm_studio.ui.state import client_state

THEMES = ("light", "h2o-dark", "neon")


def _form(q: Q, note: ui.Component | None = None) -> None:
    state = client_state(q)
    store = state.store
    handler = secrets.current_handler(store)
    stored = secrets.load(handler, state.session_secrets)
    items: list = [note] if note else []
    items += [
        ui.text_l("Credentials"),
        ui.dropdown(
            name="credential_handler",
            label="Credential handler",
            value=handler,
            choices=[ui.choice(k, v) for k, v in secrets.handlers().items()],
            tooltip="Where saved keys are kept. None of them is ever shown here again.",
        ),
    ]
    for key, label in secrets.SECRETS.items():
        items.append(
            ui.textbox(
                name=f"secret_{key}",
                label=label,
                password=key not in ("KAGGLE_USERNAME", "AWS_ACCESS_KEY_ID"),
                # A saved value is never rendered back: the placeholder only says it exists.
                placeholder="saved (type to replace)" if key in stored else "",
            )
        )
    items += [
        ui.textbox(
            name="openai_api_base",
            label="OpenAI API endpoint",
            value=store.get_setting("openai_api_base", os.environ.get("OPENAI_API_BASE", "")),
            tooltip="Any OpenAI-compatible server; defaults to the OPENAI_API_BASE variable.",
        ),
        ui.separator(),
        ui.text_l("Defaults"),
        ui.dropdown(
            name="default_problem_type",
            label="Default problem type",
            value=store.get_setting("default_problem_type", DEFAULT_PROBLEM_TYPE),
            choices=[ui.choice(k, v) for k, v in PROBLEM_TYPE_LABELS.items()],
        ),
        ui.dropdown(
            name="theme",
            label="Theme",
            value=store.get_setting("theme", "light"),
            choices=[ui.choice(t, t) for t in THEMES],
        ),
    ]
    items += _local_import_items()
    items.append(ui.buttons([ui.button(name="save_settings", label="Save settings", primary=True)]))
    layout.show(q, {"settings": ui.form_card(box="main", title="Settings", items=items)})


def _local_import_items() -> list:
    """Read-only: the folders are set by the environment when the app starts."""
    return [
        ui.separator(),
        ui.text_l("Local import"),
        ui.textbox(
            name="local_roots",
            label="Allowed local folders",
            value=", ".join(str(root) for root in local_roots()),
            readonly=True,
        ),
        ui.text(local_roots_note()),
    ]


@on("#settings")
async def settings_page(q: Q) -> None:
    _form(q)


@on("save_settings")
async def save_settings(q: Q) -> None:
    state = client_state(q)
    store = state.store
    handler = q.args.credential_handler or secrets.current_handler(store)
    values = {key: q.args[f"secret_{key}"] or "" for key in secrets.SECRETS}
    try:
        secrets.save(handler, values, state.session_secrets)
    except secrets.SecretsError as err:  # e.g. no keyring backend: nothing saved, say why
        _form(q, layout.message(str(err), "error"))
        return
    store.set_setting("credential_handler", handler)
    store.set_setting("openai_api_base", q.args.openai_api_base or "")
    store.set_setting("default_problem_type", q.args.default_problem_type)
    store.set_setting("theme", q.args.theme)
    q.client.theme = q.args.theme
    q.page["meta"].theme = q.args.theme
    _form(q, layout.message("Settings saved.", "success"))
