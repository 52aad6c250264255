"""The LLM Studio GUI, served by Wave: `wave run --no-reload app` (see `make llmstudio`)."""

from h2o_wave import main  # noqa: F401  (the ASGI app `wave run` serves)

import llm_studio.ui.main  # noqa: F401  (registers the "/" route and the page handlers)
