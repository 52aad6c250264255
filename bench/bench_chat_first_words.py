"""Benchmark: seconds from a chat question to its first streamed words, default backbone (SmolLM2).

Compared in the same process, on the same experiment folder (its checkpoint is the default
backbone): the model loaded with the first question (baseline: the Chat tab as it was) against
the model loaded and warmed up when the tab opens (the Chat tab now: Send only generates).
Prints both and the ratio; the Chat tab's goal is 0.5 s on the default backbone.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "What is the capital of France?"


def experiment_folder(root: Path) -> Path:
    """A finished experiment with the default settings whose checkpoint is the backbone."""
    from llm_studio.config.causal_lm import CausalLMConfig
    from llm_studio.config.yaml_io import save_config
    from llm_studio.experiments.folder import ExperimentFolder
    from llm_studio.models.offline_backbone import DEFAULT_BACKBONE, local_copy

    backbone = local_copy(DEFAULT_BACKBONE)
    if backbone is None:
        sys.exit("the default backbone is missing: run `make setup`")
    folder = ExperimentFolder(root / "bench-chat")
    cfg = CausalLMConfig()
    cfg.experiment_name, cfg.output_directory = "bench-chat", str(folder.path)
    cfg.llm_backbone = DEFAULT_BACKBONE
    save_config(cfg, folder.cfg_yaml)
    folder.checkpoint_dir.mkdir(parents=True)
    for file in Path(backbone).iterdir():
        (folder.checkpoint_dir / file.name).symlink_to(file.resolve())
    return folder.path


def first_words(session) -> float:
    """Seconds until the streamer yields the first text of the answer to QUESTION."""
    from transformers import TextIteratorStreamer

    session.prediction.max_length_inference = 8  # only the start of the answer matters
    streamer = TextIteratorStreamer(session.tokenizer, skip_prompt=True, skip_special_tokens=True)
    started = time.monotonic()
    thread = threading.Thread(target=session.ask, args=(QUESTION,), kwargs={"streamer": streamer})
    thread.start()
    seconds = None
    for text in streamer:
        if text and seconds is None:
            seconds = time.monotonic() - started
    thread.join()
    return seconds


def main() -> None:
    from llm_studio.models.chat import ChatSession

    with tempfile.TemporaryDirectory() as tmp:
        path = experiment_folder(Path(tmp))
        started = time.monotonic()
        cold = ChatSession.from_experiment(path)
        cold_seconds = time.monotonic() - started + first_words(cold)
        del cold

        session = ChatSession.from_experiment(path)  # when the tab opens
        session.warm_up()
        ready_seconds = first_words(session)
    print(f"first words, model loaded with the question (baseline): {cold_seconds:.2f} s")
    print(f"first words, model loaded when the tab opened:         {ready_seconds:.2f} s")
    print(f"ratio: {cold_seconds / ready_seconds:.1f}x sooner (goal: under 0.5 s)")


if __name__ == "__main__":
    main()
