"""`python prompt.py -e <experiment folder>`: chat in the terminal, or answer piped questions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from llm_studio.config.settings import ConfigError, coerce, field_types, spec_of

HELP = "Type a question. '--param value' changes a prediction setting (e.g. --temperature 0.3); 'exit' quits."


def set_parameter(prediction, line: str) -> str:
    """Apply '--name value' to the prediction settings; returns what changed."""
    parts = line[2:].split(maxsplit=1)
    if len(parts) != 2:
        raise ConfigError(f"{line!r}: expected '--name value'")
    name, value = parts
    fields = {f.name: f for f in prediction.__dataclass_fields__.values()}
    if name not in fields:
        raise ConfigError(f"--{name}: no such prediction setting; choose from {sorted(fields)}")
    hint = field_types(type(prediction))[name]
    setattr(prediction, name, coerce(f"prediction.{name}", value, hint, spec_of(fields[name])))
    return f"{name} = {getattr(prediction, name)!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prompt.py", description="Chat with a trained model.")
    parser.add_argument("-e", "--experiment", required=True, help="the experiment's output folder")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)

    from llm_studio.models.chat import ChatSession

    try:
        chat = ChatSession.from_experiment(args.experiment, device=args.device)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    interactive = sys.stdin.isatty()
    if interactive:
        print(HELP)
    for line in _questions(interactive):
        if line.startswith("--"):
            try:
                message = set_parameter(chat.prediction, line)
            except ConfigError as exc:
                message = f"Error: {exc}"
            print(message, file=sys.stderr if not interactive else sys.stdout)
            continue
        answer = chat.ask(line)
        print(f"Bot: {answer}" if interactive else answer, flush=True)
    return 0


def _questions(interactive: bool) -> Iterator[str]:
    """The lines the user types (after a "You: " prompt) or pipes in, stripped and non-empty,
    until the input ends or, typed, 'exit' or 'quit'."""
    while True:
        if interactive:
            try:
                line = input("You: ")
            except (EOFError, KeyboardInterrupt):
                print()
                return
        else:
            line = sys.stdin.readline()
            if not line:
                return
        line = line.strip()
        if interactive and line.lower() in ("exit", "quit"):
            return
        if line:
            yield line
