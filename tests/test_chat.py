"""prompt.py's chat session: history kept to num_history turns, in the training prompt format."""

from __future__ import annotations

from transformers import AutoModelForCausalLM, AutoTokenizer

from llm_studio.config.sections import DatasetSection, PredictionSection
from llm_studio.data.prompt_format import PromptFormat
from llm_studio.models.chat import ChatSession


def session(tiny_model_dir, num_history: int) -> ChatSession:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = PromptFormat.from_config(DatasetSection(), "</s>").chat_template()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prediction = PredictionSection(max_length_inference=3, num_history=num_history)
    return ChatSession(model=model, tokenizer=tokenizer, prediction=prediction)


def test_num_history_limits_the_turns_the_model_sees(tiny_model_dir):
    chat = session(tiny_model_dir, num_history=1)
    for question in ("first question", "second question", "third question"):
        chat.ask(question)
    messages = chat.messages("fourth question")
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "third question",
        "fourth question",
    ]
    chat.prediction.num_history = 3
    users = [m["content"] for m in chat.messages("fourth question") if m["role"] == "user"]
    assert users == ["first question", "second question", "third question", "fourth question"]
    chat.prediction.num_history = 0
    assert len(chat.messages("fourth question")) == 1


def test_chat_prompt_is_the_training_format_with_the_last_answers(tiny_model_dir):
    chat = session(tiny_model_dir, num_history=4)
    first = chat.ask("Hello")
    text = chat.tokenizer.apply_chat_template(
        chat.messages("Again"), tokenize=False, add_generation_prompt=True
    )
    assert text == f"<|prompt|>Hello</s><|answer|>{first}</s><|prompt|>Again</s><|answer|>"
