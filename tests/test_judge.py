"""The GPT metric against a real OpenAI-compatible HTTP server on 127.0.0.1 (pytest-httpserver).

The server grades an answer by its length (characters mod 11), so every score it hands out can be
recomputed here from what it was sent; its log keeps each request; it can fail a row once with
HTTP 500, answer without a score, or refuse the key.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import load_cfg, tiny_config
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from llm_studio.config.settings import ConfigError
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.metrics import judge
from llm_studio.metrics.judge import (
    judge_scores,
    judge_unavailable_reason,
    load_template,
    mt_bench_conversations,
    parse_score,
)
from llm_studio.training.loop import run_experiment
from llm_studio.training.validation import ValidationResult

SECRET = "sk-test-5f1e9c0d-never-log-me"
ANSWER = re.compile(r"\[Answer to grade\]\n(.*?)\n\[End of answer to grade\]", re.DOTALL)


def server_score(answer: str) -> int:
    return len(answer) % 11


def answer_in(body: dict) -> str | None:
    found = ANSWER.search(body["messages"][-1]["content"])
    return found.group(1) if found else None


def grade(answer: str | None) -> int | None:
    """The score the server hands out for an answer, None for an answer it gives no score."""
    return None if answer is None or "NOSCORE" in answer else server_score(answer)


class JudgeServer:
    """Serves POST /v1/chat/completions (any other route is a 404) on a pytest-httpserver."""

    def __init__(self, httpserver: HTTPServer):
        self.httpserver = httpserver
        self.failed_once: set[str] = set()
        self.lock = threading.Lock()
        httpserver.no_handler_status_code = 404
        httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(
            self.complete
        )

    @property
    def base_url(self) -> str:
        return self.httpserver.url_for("/v1")

    def complete(self, request: Request) -> Response:
        body = request.get_json()
        answer = answer_in(body)
        auth = request.headers.get("Authorization")
        if auth != f"Bearer {SECRET}":
            return self.reply(401, {"error": {"message": "bad key"}})
        with self.lock:
            flaky_first = (
                answer is not None and "FLAKY" in answer and answer not in self.failed_once
            )
            if flaky_first:
                self.failed_once.add(answer)
        if flaky_first:
            # The error body echoes the key, as a careless server might: it must not reach a log.
            return self.reply(500, {"error": {"message": f"temporary failure for {auth}"}})
        score = grade(answer)
        text = (
            "I would rather not say."
            if score is None
            else f"The answer is what it is.\nScore: {score}"
        )
        completion = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return self.reply(200, completion)

    @staticmethod
    def reply(status: int, payload: dict) -> Response:
        return Response(json.dumps(payload), status=status, content_type="application/json")

    @property
    def requests(self) -> list[dict]:
        """Each request the server got, in order, with what it answered."""
        records = []
        for request, response in list(self.httpserver.log):
            body = json.loads(request.get_data() or b"{}")
            answer = answer_in(body) if body.get("messages") else None
            records.append(
                {
                    "model": body.get("model"),
                    "content": body["messages"][-1]["content"] if body.get("messages") else None,
                    "answer": answer,
                    "auth": request.headers.get("Authorization"),
                    "status": response.status_code,
                    "score": grade(answer) if response.status_code == 200 else None,
                }
            )
        return records

    def scored(self) -> list[dict]:
        return [r for r in self.requests if r["status"] == 200 and r["score"] is not None]


@pytest.fixture
def clean_env(monkeypatch):
    for name in (
        judge.ENV_API_KEY,
        judge.ENV_API_BASE,
        judge.ENV_MAX_ROWS,
        judge.ENV_WORKERS,
        judge.ENV_RETRIES,
        judge.ENV_TIMEOUT,
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def server(clean_env):
    # Our own instance rather than the plugin's `httpserver` fixture, which listens on
    # "localhost": the house rule is 127.0.0.1. Threaded, as the judge sends rows concurrently.
    with HTTPServer(host="127.0.0.1", port=0, threaded=True) as httpserver:
        srv = JudgeServer(httpserver)
        clean_env.setenv(judge.ENV_API_BASE, srv.base_url)
        clean_env.setenv(judge.ENV_API_KEY, SECRET)
        yield srv


def prediction_cfg(template="general", model="judge-model-x"):
    return SimpleNamespace(metric="GPT", metric_gpt_model=model, metric_gpt_template=template)


def rows(n: int, answer=lambda i: "answer " + "x" * i) -> dict:
    return {
        "prompts": [f"Question number {i}?" for i in range(n)],
        "targets": [f"Reference {i}." for i in range(n)],
        "predictions": [answer(i) for i in range(n)],
        "sample_losses": [0.0] * n,
    }


def test_scores_are_the_servers_and_requests_carry_model_question_reference_answer(server):
    data = rows(12)
    scores = judge_scores(**data, prediction_cfg=prediction_cfg())
    expected = [server_score(p) for p in data["predictions"]]
    assert scores == expected
    assert np.mean(scores) == pytest.approx(np.mean([r["score"] for r in server.scored()]))

    assert len(server.requests) == 12
    assert {r["model"] for r in server.requests} == {"judge-model-x"}
    assert {r["auth"] for r in server.requests} == {f"Bearer {SECRET}"}
    by_answer = {r["answer"]: r["content"] for r in server.requests}
    for question, reference, answer in zip(
        data["prompts"], data["targets"], data["predictions"], strict=True
    ):
        content = by_answer[answer]
        assert question in content and reference in content
        assert "{{" not in content and "#" not in content.splitlines()[0]


def test_a_row_failing_once_with_500_is_retried_and_scored(server, caplog):
    data = rows(4, answer=lambda i: f"FLAKY answer {'y' * i}")
    with caplog.at_level(logging.INFO, logger="llm_studio"):
        scores = judge_scores(**data, prediction_cfg=prediction_cfg())
    assert scores == [server_score(p) for p in data["predictions"]]
    statuses = [r["status"] for r in server.requests]
    assert statuses.count(500) == 4 and statuses.count(200) == 4
    assert "answered after 1 retried request(s)" in caplog.text


def test_without_retries_a_failed_row_is_nan_and_the_echoed_key_is_not_logged(server, caplog):
    data = rows(3, answer=lambda i: "FLAKY" if i == 1 else f"fine {i}")
    caplog.set_level(logging.DEBUG)  # every logger, the openai client's included
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(judge.ENV_RETRIES, "0")
        scores = judge_scores(**data, prediction_cfg=prediction_cfg())
    assert scores[0] == server_score("fine 0") and scores[2] == server_score("fine 2")
    assert math.isnan(scores[1])
    assert "row 1 not judged" in caplog.text and "Bearer ***" in caplog.text
    assert SECRET not in caplog.text


def test_the_cap_limits_the_rows_sent_and_the_mean_is_over_judged_rows(server):
    data = rows(9)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(judge.ENV_MAX_ROWS, "4")
        scores = judge_scores(**data, prediction_cfg=prediction_cfg())
    assert len(server.requests) == 4
    assert sorted(r["answer"] for r in server.requests) == sorted(data["predictions"][:4])
    assert scores[:4] == [server_score(p) for p in data["predictions"][:4]]
    assert all(math.isnan(s) for s in scores[4:])
    result = ValidationResult(
        data["prompts"], data["targets"], data["predictions"], [0.0] * 9, scores
    )
    assert result.metric_value == pytest.approx(np.mean([r["score"] for r in server.scored()]))


def test_validation_mean_ignores_nan_scores():
    result = ValidationResult(["p"] * 3, ["t"] * 3, ["a"] * 3, [1.0] * 3, [2.0, math.nan, 4.0])
    assert result.metric_value == 3.0


def test_an_answer_without_a_score_is_nan_with_a_warning(server, caplog):
    data = rows(3, answer=lambda i: "NOSCORE" if i == 0 else f"ok {i}")
    with caplog.at_level(logging.WARNING, logger="llm_studio"):
        scores = judge_scores(**data, prediction_cfg=prediction_cfg())
    assert math.isnan(scores[0]) and scores[1:] == [server_score("ok 1"), server_score("ok 2")]
    assert "row 0: no 0-10 score" in caplog.text


def test_a_refused_key_stops_the_remaining_rows(server, caplog):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(judge.ENV_API_KEY, "sk-wrong-key")
        mp.setenv(judge.ENV_WORKERS, "1")
        scores = judge_scores(**rows(5), prediction_cfg=prediction_cfg())
    assert all(math.isnan(s) for s in scores)
    assert len(server.requests) == 1, "a 401 is not retried and stops the other rows"
    assert "AuthenticationError" in caplog.text and "sk-wrong-key" not in caplog.text


@pytest.mark.parametrize(
    "present, missing",
    [
        ({}, "OPENAI_API_KEY and OPENAI_API_BASE are not set"),
        ({"OPENAI_API_KEY": SECRET}, "OPENAI_API_BASE is not set"),
        ({"OPENAI_API_BASE": "http://127.0.0.1:1/v1"}, "OPENAI_API_KEY is not set"),
        ({"OPENAI_API_BASE": "http://127.0.0.1:1/v1", "OPENAI_API_KEY": " "}, "OPENAI_API_KEY is"),
    ],
)
def test_missing_key_or_endpoint_is_named(clean_env, present, missing):
    for name, value in present.items():
        clean_env.setenv(name, value)
    reason = judge_unavailable_reason()
    assert reason is not None and reason.startswith(missing)
    assert SECRET not in reason
    with pytest.raises(ConfigError, match="metric GPT"):
        judge_scores(**rows(1), prediction_cfg=prediction_cfg())


def test_both_variables_set_make_the_judge_available(clean_env):
    clean_env.setenv("OPENAI_API_KEY", SECRET)
    clean_env.setenv("OPENAI_API_BASE", "http://127.0.0.1:1/v1")
    assert judge_unavailable_reason() is None
    clean_env.setenv("OPENAI_API_BASE", "127.0.0.1:1/v1")
    assert "not an http(s) URL" in judge_unavailable_reason()


def test_a_missing_template_is_named_with_the_available_ones():
    with pytest.raises(ConfigError, match=r"'nope'.*available: general, mt-bench"):
        load_template("nope")
    with pytest.raises(ConfigError, match="no judge template"):
        load_template("../prompts/general")
    body = load_template("general")
    assert not body.startswith("#") and "{{answer}}" in body and "Score:" in body


@pytest.mark.parametrize(
    "text, score",
    [
        ("Good.\nScore: 7", 7.0),
        ("Reasoning...\n**Score:** 8.5", 8.5),
        ("score 7/10", 7.0),
        ("I'd give it 9/10.", 9.0),
        ("Rating: [[6]]", 6.0),
        ("[[4]]", 4.0),
        (" 3 ", 3.0),
        ("Score: 2 at first, but on reflection Score: 5", 5.0),
        ("Score: 11", math.nan),
        ("Score: -1", math.nan),
        ("No grade here.", math.nan),
        ("", math.nan),
        (None, math.nan),
    ],
)
def test_parse_score(text, score):
    got = parse_score(text)
    assert (math.isnan(got) and math.isnan(score)) or got == score


def test_mt_bench_questions_become_one_conversation_per_turn(tmp_path):
    conversations = mt_bench_conversations()
    questions = judge.read_mt_bench_questions()
    assert len(questions) >= 10 and len({q.category for q in questions}) >= 6
    assert len(conversations) == sum(len(q.turns) for q in questions)
    first, second = conversations[0], conversations[1]
    assert first.system is None and len(first.prompts) == len(first.answers) == 1
    assert second.prompts[0] == first.prompts[0] and second.answers[0] == first.answers[0]

    bad = tmp_path / "q.jsonl"
    bad.write_text('{"category": "math", "turns": ["a", "b"], "reference": ["x"]}\n')
    with pytest.raises(ConfigError, match=r"q.jsonl:1: 'reference'"):
        mt_bench_conversations(bad)


def test_mt_bench_template_shows_category_and_earlier_turns(server):
    conversations = mt_bench_conversations()[:4]
    data = {
        "prompts": [c.prompts[-1] for c in conversations],
        "targets": [c.answers[-1] for c in conversations],
        "predictions": [f"model answer {i}" for i in range(4)],
    }
    scores = judge_scores(**data, prediction_cfg=prediction_cfg("mt-bench"))
    assert scores == [server_score(p) for p in data["predictions"]]
    by_answer = {r["answer"]: r["content"] for r in server.requests}
    question = judge.read_mt_bench_questions()[0]
    first, second = by_answer["model answer 0"], by_answer["model answer 1"]
    assert f'category "{question.category}"' in first and "first turn" in first
    assert question.turns[0] in second and question.reference[0] in second
    assert question.turns[1] in second


# --- end to end: a training run on the tiny model ---------------------------------------------


def _run(tmp_path, model_dir, csv, name, caplog) -> ExperimentFolder:
    data = tiny_config(
        model_dir,
        csv,
        tmp_path / name,
        prediction={"metric": "GPT", "metric_gpt_model": "judge-e2e", "max_length_inference": 3},
        training={"save_checkpoint": "disable"},
        # A few training steps are enough: this is about validation.
        dataset={"data_sample": 0.25, "data_sample_choice": ["Train"]},
    )
    cfg = load_cfg(data)
    caplog.set_level(logging.DEBUG)
    run_experiment(cfg, ExperimentStatus(state="running"))
    return ExperimentFolder(cfg.output_directory)


def _chart(folder: ExperimentFolder, name: str) -> list[float]:
    return [p.value for p in folder.read_charts()[0] if p.name == name]


def test_training_run_charts_the_mean_of_the_judges_scores(
    server, tmp_path, tiny_model_dir, pattern_csv, caplog
):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(judge.ENV_MAX_ROWS, "7")
        folder = _run(tmp_path, tiny_model_dir, pattern_csv, "gpt", caplog)
    values = _chart(folder, "validation/GPT")
    assert len(values) == 1
    assert len(server.requests) == 7 and {r["model"] for r in server.requests} == {"judge-e2e"}
    returned = [r["score"] for r in server.scored()]
    assert len(returned) == 7
    assert values[0] == pytest.approx(np.mean(returned))

    df = pd.read_csv(folder.predictions_csv)
    assert df["GPT"].isna().sum() == len(df) - 7
    assert sorted(df["GPT"].dropna().tolist()) == sorted(returned)
    assert "judging 7 of" in caplog.text and server.base_url in caplog.text
    assert SECRET not in caplog.text
    for path in folder.path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_training_run_without_a_judge_falls_back_to_bleu(
    clean_env, tmp_path, tiny_model_dir, pattern_csv, caplog
):
    folder = _run(tmp_path, tiny_model_dir, pattern_csv, "bleu", caplog)
    assert len(_chart(folder, "validation/BLEU")) == 1
    assert _chart(folder, "validation/GPT") == []
    assert "metric GPT: OPENAI_API_KEY and OPENAI_API_BASE are not set; using BLEU" in caplog.text
