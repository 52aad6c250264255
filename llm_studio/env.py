"""LLM Studio's own environment variables: one prefix, H2O_LLM_STUDIO_ (the guide's, as in
H2O_LLM_STUDIO_WORKDIR). Earlier releases also read some as LLM_STUDIO_X; those still work, with
a warning, so existing scripts and Docker setups keep running while they move to the new name.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Mapping

PREFIX = "H2O_LLM_STUDIO_"
OLD_PREFIX = "LLM_STUDIO_"

log = logging.getLogger("llm_studio")
_warned: set[str] = set()
_warned_lock = threading.Lock()


def setting_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of `name` (H2O_LLM_STUDIO_X), else of the deprecated LLM_STUDIO_X; None if
    neither is set. The old name warns once per process."""
    if not name.startswith(PREFIX):
        raise ValueError(f"{name!r}: LLM Studio's variables start with {PREFIX}")
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value is not None:
        return value
    old = OLD_PREFIX + name.removeprefix(PREFIX)
    value = env.get(old)
    if value is not None:
        with _warned_lock:
            first = old not in _warned
            _warned.add(old)
        if first:
            message = f"{old} is deprecated and will stop working; set {name} instead."
            log.warning(message)
            warnings.warn(message, DeprecationWarning, stacklevel=2)
    return value
