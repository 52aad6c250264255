"""The chat template saved with a model yields exactly the token ids the model was trained on."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import pytest

from llm_studio.data.prompt_format import Conversation, PromptFormat, to_messages
from llm_studio.data.tokenization import encode_for_training, encode_prompt

CONV = Conversation(
    "You are a helpful assistant.",
    ("Name a colour.", "Another one?", "What is 7 plus 5?"),
    ("Red", "Blue", "It is 12."),
)
NO_SYSTEM = Conversation(None, ("Hello, who are you?",), ("I am a small language model.",))

FORMATS = {
    "defaults": dict(
        system_start="<|system|>",
        prompt_start="<|prompt|>",
        answer_separator="<|answer|>",
        eos_after_system=True,
        eos_after_prompt=True,
        eos_after_answer=True,
    ),
    "no_eos": dict(
        system_start="<|system|>",
        prompt_start="<|prompt|>",
        answer_separator="<|answer|>",
        eos_after_system=False,
        eos_after_prompt=False,
        eos_after_answer=False,
    ),
    "custom_with_newlines": dict(
        system_start="### System:\n",
        prompt_start="\n### User: ",
        answer_separator="\n### Assistant:\n",
        eos_after_system=False,
        eos_after_prompt=True,
        eos_after_answer=True,
    ),
    "quotes_braces_unicode": dict(
        system_start='{{ "sys" }} ',
        prompt_start="{% raw %}'\\n Frage: ",
        answer_separator=" }} Antwort ✓: ",
        eos_after_system=True,
        eos_after_prompt=False,
        eos_after_answer=True,
    ),
}


def ids_of(result) -> list[int]:
    if isinstance(result, Mapping) or hasattr(result, "keys"):
        result = result["input_ids"]
    return list(result)


def with_template(tokenizer, fmt: PromptFormat):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = fmt.chat_template()
    return tok


@pytest.fixture(params=sorted(FORMATS))
def fmt(request, tiny_tokenizer) -> PromptFormat:
    return PromptFormat(eos_token=tiny_tokenizer.eos_token, **FORMATS[request.param])


@pytest.mark.parametrize("conv", [CONV, NO_SYSTEM], ids=["system_3_turns", "no_system"])
def test_chat_template_gives_the_training_ids(tiny_tokenizer, fmt, conv):
    tok = with_template(tiny_tokenizer, fmt)
    templated = ids_of(
        tok.apply_chat_template(to_messages(conv), tokenize=True, add_generation_prompt=False)
    )
    trained = encode_for_training(
        conv, tiny_tokenizer, fmt, max_length=10_000, mask_prompt_labels=True
    )
    assert templated == trained.input_ids
    # The rendered text is the format's own rendering, not just the same length.
    assert tok.decode(templated) == fmt.render(conv)


@pytest.mark.parametrize("conv", [CONV, NO_SYSTEM], ids=["system_3_turns", "no_system"])
def test_generation_prompt_gives_the_inference_prompt_ids(tiny_tokenizer, fmt, conv):
    tok = with_template(tiny_tokenizer, fmt)
    templated = ids_of(
        tok.apply_chat_template(
            to_messages(conv, with_last_answer=False), tokenize=True, add_generation_prompt=True
        )
    )
    assert templated == encode_prompt(conv, tiny_tokenizer, fmt, max_length=10_000)
    text = tok.decode(templated)
    assert text.endswith(
        conv.prompts[-1] + ("</s>" if fmt.eos_after_prompt else "") + fmt.answer_separator
    )
    assert conv.answers[-1] not in text


def test_templated_text_matches_the_expected_layout(tiny_tokenizer):
    fmt = PromptFormat(eos_token=tiny_tokenizer.eos_token, **FORMATS["custom_with_newlines"])
    tok = with_template(tiny_tokenizer, fmt)
    text = tok.apply_chat_template(to_messages(CONV), tokenize=False)
    assert text == (
        "### System:\nYou are a helpful assistant."
        "\n### User: Name a colour.</s>\n### Assistant:\nRed</s>"
        "\n### User: Another one?</s>\n### Assistant:\nBlue</s>"
        "\n### User: What is 7 plus 5?</s>\n### Assistant:\nIt is 12.</s>"
    )
