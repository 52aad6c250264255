"""The prompt format: one function renders a conversation for training, and the same format
becomes the tokenizer's chat template, so `apply_chat_template` yields the training token ids."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Conversation:
    """A chain of turns; the last turn's answer is the training target / the one to predict."""

    system: str | None
    prompts: tuple[str, ...]
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Segment:
    text: str
    is_answer: bool


@dataclass(frozen=True)
class PromptFormat:
    system_start: str
    prompt_start: str
    answer_separator: str
    eos_token: str
    eos_after_system: bool
    eos_after_prompt: bool
    eos_after_answer: bool

    @classmethod
    def from_config(cls, dataset_cfg, eos_token: str, answers: bool = True) -> PromptFormat:
        """The dataset section's format. `answers=False` for a head's prompts, which end at the
        answer separator (their sections have no `add_eos_token_to_answer`)."""
        return cls(
            system_start=dataset_cfg.text_system_start or "",
            prompt_start=dataset_cfg.text_prompt_start or "",
            answer_separator=dataset_cfg.text_answer_separator or "",
            eos_token=eos_token,
            eos_after_system=dataset_cfg.add_eos_token_to_system,
            eos_after_prompt=dataset_cfg.add_eos_token_to_prompt,
            eos_after_answer=answers and dataset_cfg.add_eos_token_to_answer,
        )

    def segments(self, conv: Conversation, with_last_answer: bool = True) -> list[Segment]:
        """Render a conversation into prompt and answer pieces (answers carry the labels)."""
        eos = self.eos_token
        out: list[Segment] = []
        if conv.system:
            out.append(
                Segment(
                    self.system_start + conv.system + (eos if self.eos_after_system else ""), False
                )
            )
        last = len(conv.prompts) - 1
        for i, (prompt, answer) in enumerate(zip(conv.prompts, conv.answers, strict=True)):
            prompt_text = self.prompt_start + prompt + (eos if self.eos_after_prompt else "")
            out.append(Segment(prompt_text + self.answer_separator, False))
            if i < last or with_last_answer:
                out.append(Segment(answer + (eos if self.eos_after_answer else ""), True))
        return out

    def render(self, conv: Conversation, with_last_answer: bool = True) -> str:
        return "".join(s.text for s in self.segments(conv, with_last_answer))

    def chat_template(self) -> str:
        """A Jinja chat template producing exactly `render` for system/user/assistant messages."""

        def lit(text: str) -> str:
            return json.dumps(text, ensure_ascii=False)

        def eos(flag: bool) -> str:
            return " + eos_token" if flag else ""

        return (
            "{%- for message in messages -%}"
            "{%- if message['role'] == 'system' -%}"
            f"{{{{ {lit(self.system_start)} + message['content']{eos(self.eos_after_system)} }}}}"
            "{%- elif message['role'] == 'user' -%}"
            f"{{{{ {lit(self.prompt_start)} + message['content']{eos(self.eos_after_prompt)}"
            " }}"
            "{%- elif message['role'] == 'assistant' -%}"
            f"{{{{ {lit(self.answer_separator)} + message['content']"
            f"{eos(self.eos_after_answer)} }}}}"
            "{%- endif -%}"
            "{%- endfor -%}"
            f"{{%- if add_generation_prompt -%}}{{{{ {lit(self.answer_separator)} }}}}{{%- endif -%}}"
        )


def to_messages(conv: Conversation, with_last_answer: bool = True) -> list[dict[str, str]]:
    """The chat-message form of a conversation, for `apply_chat_template`."""
    messages = [{"role": "system", "content": conv.system}] if conv.system else []
    last = len(conv.prompts) - 1
    for i, (prompt, answer) in enumerate(zip(conv.prompts, conv.answers, strict=True)):
        messages.append({"role": "user", "content": prompt})
        if i < last or with_last_answer:
            messages.append({"role": "assistant", "content": answer})
    return messages
