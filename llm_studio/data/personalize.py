"""Personalize: the model answers with your chatbot's name and author instead of the ones in
the data (e.g. the OASST data's "Open Assistant" and "LAION"), and learns a few self-introductions.
"""

from __future__ import annotations

import re

from llm_studio.data.prompt_format import Conversation

NAMES = ("Open Assistant", "Open-Assistant", "OpenAssistant")
AUTHORS = ("LAION",)

IDENTITY_TURNS = (
    ("What is your name?", "My name is {name}."),
    ("Who are you?", "I am {name}, an AI assistant made by {author}."),
    ("Who created you?", "I was created by {author}."),
    ("Who trained you?", "{author} trained me. I am {name}."),
    ("Introduce yourself.", "Hello! I am {name}, a helpful assistant built by {author}."),
)


def _replacer(words: tuple[str, ...], replacement: str):
    pattern = re.compile("|".join(re.escape(w) for w in words), flags=re.IGNORECASE)
    return lambda text: pattern.sub(replacement, text)


def personalize(conversations: list[Conversation], name: str, author: str) -> list[Conversation]:
    rename = _replacer(NAMES, name)
    reauthor = _replacer(AUTHORS, author)

    def fix(text: str) -> str:
        return reauthor(rename(text))

    renamed = [
        Conversation(
            fix(c.system) if c.system else c.system,
            tuple(fix(p) for p in c.prompts),
            tuple(fix(a) for a in c.answers),
        )
        for c in conversations
    ]
    identity = [
        Conversation(None, (q,), (a.format(name=name, author=author),)) for q, a in IDENTITY_TURNS
    ]
    return renamed + identity
