"""Preprocessing done once in a distributed run: rank 0 reads, splits, samples and tokenizes
the data into a cache in the experiment folder; the other ranks wait for each file and load it.

They wait by looking for the file, not in a collective, so a large dataset cannot run into the
collective timeout; should rank 0 fail meanwhile, torchrun ends them. A resumed run loads the
cache of the run it continues (the very samples, tokenized as before); a finished run deletes
it. In one process nothing is cached. docs/distributed.md has the rest.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from llm_studio.atomic import write_atomic
from llm_studio.training.distributed import Distributed

log = logging.getLogger("llm_studio")

T = TypeVar("T")

# In the experiment folder: rank 0's preprocessed data for the other ranks (and for --resume).
DATA_CACHE = ".data_cache"
CACHE_POLL_S = 0.2


def data_cache(ddp: Distributed, folder: Path, resume: bool) -> Path | None:
    """The folder of this run's preprocessing cache (None in one process). A new run starts
    it afresh; a resumed run keeps the cache of the run it continues, so it trains on the
    very samples, read and tokenized as before."""
    if not ddp.active:
        return None
    cache = Path(folder) / DATA_CACHE
    if ddp.is_main and not resume:
        shutil.rmtree(cache, ignore_errors=True)
    ddp.from_main(None)  # no rank looks for a cache file before a stale one is gone
    return cache


def once(ddp: Distributed, path: Path | None, build: Callable[[], T]) -> T:
    """`build()` on rank 0, pickled to `path` (or read from it when a resumed run finds it
    there); the other ranks wait for the file and load it. They wait by looking for the
    file, not in a collective, so preprocessing a large dataset cannot run into the
    collective timeout; should rank 0 fail meanwhile, torchrun ends them."""
    if path is None:
        return build()
    if ddp.is_main and not path.exists():
        result = build()
        write_atomic(path, lambda tmp: _pickle(result, tmp))  # never seen half written
        return result
    waited = 0.0
    while not path.exists():
        time.sleep(CACHE_POLL_S)
        waited += CACHE_POLL_S
        if waited % 60 < CACHE_POLL_S:
            log.warning("rank %d: waiting for rank 0's %s (%.0f s)", ddp.rank, path, waited)
    if ddp.is_main:
        log.info("Preprocessing: %s from the run this one resumes", path.name)
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _pickle(obj: object, path: Path) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)


def read_data_once(ddp: Distributed, cache: Path | None, read: Callable[[], T], task) -> T:
    """`read()` (read, split and sample the data) once, on rank 0 (`once`). The task's
    state goes along: reading data may set it (the number of classes a classification
    task infers from its train data)."""

    def read_with_state():
        data = read()
        return data, {k: v for k, v in vars(task).items() if k not in ("cfg", "device")}

    data, state = once(ddp, cache and cache / "data.pkl", read_with_state)
    vars(task).update(state)
    return data


def drop_data_cache(ddp: Distributed, cache: Path | None) -> None:
    """After a finished run: no run will resume it."""
    if cache is not None and ddp.is_main:
        shutil.rmtree(cache, ignore_errors=True)
