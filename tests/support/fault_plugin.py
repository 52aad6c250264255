"""Faults where a test wants them, injected into train.py (and every rank of
distributed_train.sh) as a training callback: the production recipe knows nothing of them.

`with_fault_plugin(env)` makes a child process load `FaultInjector` (through
H2O_LLM_STUDIO_TRAINING_CALLBACKS and PYTHONPATH); these variables then steer it:

- LLM_STUDIO_FAULT_AT_STEP=SIGTERM:5 delivers SIGTERM to the process after step 5 (any signal
  name: SIGKILL:3), and error:5 raises a RuntimeError there, to exercise clean stops and crashes
  exactly where a test wants them;
- LLM_STUDIO_FAULT_RANK=1: only rank 1 of a distributed run does it;
- LLM_STUDIO_DATA_DELAY_S=12: rank 0 of a distributed run reads the data this many seconds late
  (a large dataset).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from llm_studio.training.callbacks import CALLBACKS_ENV, TrainingCallback

if TYPE_CHECKING:
    from llm_studio.training.loop import FineTuneRecipe

FAULT_ENV = "LLM_STUDIO_FAULT_AT_STEP"
FAULT_RANK_ENV = "LLM_STUDIO_FAULT_RANK"
DATA_DELAY_ENV = "LLM_STUDIO_DATA_DELAY_S"
TESTS = Path(__file__).resolve().parents[1]

log = logging.getLogger("llm_studio")


def with_fault_plugin(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child train.py that loads the injector (it does nothing unless told)."""
    path = [str(TESTS), *filter(None, [env.get("PYTHONPATH")])]
    return {
        **env,
        CALLBACKS_ENV: "support.fault_plugin:FaultInjector",
        "PYTHONPATH": os.pathsep.join(path),
    }


class FaultInjector(TrainingCallback):
    def on_read_data(self, recipe: FineTuneRecipe) -> None:
        delay = float(os.environ.get(DATA_DELAY_ENV, 0))
        if delay and recipe.ddp.active:
            log.info("%s: rank 0 reads the data after %.0f s", DATA_DELAY_ENV, delay)
            time.sleep(delay)

    def on_step_end(self, recipe: FineTuneRecipe) -> None:
        step, rank = recipe.position.step, recipe.ddp.rank
        wanted = os.environ.get(FAULT_ENV)
        only_rank = os.environ.get(FAULT_RANK_ENV)
        if not wanted or (only_rank and int(only_rank) != rank):
            return
        name, _, at = wanted.partition(":")
        if at and int(at) == step and name == "error":
            raise RuntimeError(f"{FAULT_ENV}: fault injected on rank {rank} at step {step}")
        if at and int(at) == step:
            os.kill(os.getpid(), getattr(signal, name))
