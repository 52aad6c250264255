"""The GPT metric: an LLM judge behind an OpenAI-compatible endpoint grades each validation answer.

The judge is reached through the `openai` client at `OPENAI_API_BASE` with the key in
`OPENAI_API_KEY`; both must be set, otherwise `resolve_metric` falls back to BLEU. Each judged row
sends one chat request built from a template in `prompts/` and gets a 0-10 score parsed from the
judge's answer. Rows are judged concurrently, the client retries failed calls, and only the first
`max_rows()` rows are sent: the other rows, and rows whose answer holds no score, score NaN, so
the experiment's value is the mean over the rows that were judged. See docs/llm-judge.md.

The API key is only handed to the client: it is never logged, and any text this module logs is
scrubbed of it first.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit, urlunsplit

from llm_studio.config.sections import PredictionSection
from llm_studio.config.settings import ConfigError
from llm_studio.data.prompt_format import Conversation
from llm_studio.env import setting_env
from llm_studio.paths import prompts_dir

if TYPE_CHECKING:  # openai is imported when the judge is called
    from openai.types.chat import ChatCompletionMessageParam

log = logging.getLogger("llm_studio")

ENV_API_KEY = "OPENAI_API_KEY"
ENV_API_BASE = "OPENAI_API_BASE"
# Tuning, each overridable by an environment variable of the same meaning.
ENV_MAX_ROWS = "H2O_LLM_STUDIO_JUDGE_MAX_ROWS"
DEFAULT_MAX_ROWS = 200  # validation rows sent to the judge per validation; 0 means all
ENV_WORKERS = "H2O_LLM_STUDIO_JUDGE_WORKERS"
DEFAULT_WORKERS = 8  # concurrent requests
ENV_RETRIES = "H2O_LLM_STUDIO_JUDGE_RETRIES"
DEFAULT_RETRIES = 3  # the openai client's max_retries: further attempts after a failed request
ENV_TIMEOUT = "H2O_LLM_STUDIO_JUDGE_TIMEOUT"
DEFAULT_TIMEOUT_S = 120.0  # per request

MT_BENCH_TEMPLATE = "mt-bench"
MT_BENCH_QUESTIONS = "mt-bench-questions.jsonl"
PLACEHOLDERS = ("question", "reference", "answer", "history", "category")
SCORE_RANGE = (0.0, 10.0)

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")
_NUMBER = r"(?<![\d.-])(\d+(?:\.\d+)?)"  # a negative number never matches


# --- availability -------------------------------------------------------------------------------


def judge_unavailable_reason() -> str | None:
    """Why no judge can be called, naming the missing variable(s); None when one can."""
    missing = [name for name in (ENV_API_KEY, ENV_API_BASE) if not os.environ.get(name, "").strip()]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return f"{' and '.join(missing)} {verb} not set"
    base = os.environ[ENV_API_BASE].strip()
    if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).netloc:
        return f"{ENV_API_BASE} ({_public_url(base)!r}) is not an http(s) URL"
    return None


def _public_url(url: str) -> str:
    """The endpoint as it may be logged: any user:password part is dropped."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))


def _int_env(name: str, default: int, minimum: int) -> int:
    raw = (setting_env(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value}: expected at least {minimum}")
    return value


def max_rows() -> int:
    """How many validation rows one validation sends to the judge (0: all of them)."""
    return _int_env(ENV_MAX_ROWS, DEFAULT_MAX_ROWS, 0)


def _timeout() -> float:
    raw = (setting_env(ENV_TIMEOUT) or "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"{ENV_TIMEOUT}={raw!r}: expected seconds") from None
    if not value > 0:
        raise ConfigError(f"{ENV_TIMEOUT}={raw!r}: expected more than 0 seconds")
    return value


# --- templates ----------------------------------------------------------------------------------


def available_templates(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or prompts_dir()).glob("*.txt"))


def load_template(name: str, directory: Path | None = None) -> str:
    """The judge prompt `<prompts>/<name>.txt`, without its leading '#' comment lines.

    Raises ConfigError naming the template and the ones there are when it is missing or uses a
    placeholder this module does not fill.
    """
    directory = directory or prompts_dir()
    path = directory / f"{name}.txt"
    if not name or Path(name).name != name or not path.is_file():
        there = ", ".join(available_templates(directory)) or "none"
        raise ConfigError(
            f"prediction.metric_gpt_template: no judge template {name!r} "
            f"(looked for {path}); available: {there}"
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    body = "\n".join(lines).strip("\n")
    used = {m.group(1) for m in _PLACEHOLDER.finditer(body)}
    unknown = sorted(used - set(PLACEHOLDERS))
    if unknown:
        raise ConfigError(
            f"judge template {path}: unknown placeholder(s) {', '.join(unknown)}; "
            f"known: {', '.join(PLACEHOLDERS)}"
        )
    if "answer" not in used:
        raise ConfigError(f"judge template {path}: it never shows the model's {{{{answer}}}}")
    return body


def fill_template(template: str, values: dict[str, str]) -> str:
    """Replace each {{name}} in one pass, so text inside the values is never read as a placeholder."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _uses(template: str, *names: str) -> bool:
    return any(m.group(1) in names for m in _PLACEHOLDER.finditer(template))


# --- score parsing ------------------------------------------------------------------------------

_SCORE_PATTERNS = (
    # "Score: 7", "score 7/10", "**Score:** 8.5", "Rating = 6 out of 10"; the last one counts.
    re.compile(
        r"(?:score|rating|grade)\W{0,6}(?:is\s+|of\s+)?\**\s*" + _NUMBER + r"(?!\d)", re.IGNORECASE
    ),
    re.compile(r"\[\[\s*" + _NUMBER + r"\s*\]\]"),  # "[[7]]"
    re.compile(_NUMBER + r"\s*(?:/|out\s+of)\s*10(?!\.?\d)", re.IGNORECASE),  # "7/10"
    re.compile(r"^\W*" + _NUMBER + r"\W*$"),  # the whole answer is a number
)


def parse_score(text: str | None) -> float:
    """The 0-10 score in a judge's answer; NaN when it holds none or one out of range.

    The templates ask for a last line `Score: <number>`; `score 7/10`, `[[7]]`, `7/10` and an
    answer that is just a number are understood too. The last mention of the first kind found wins.
    """
    if not text:
        return math.nan
    for pattern in _SCORE_PATTERNS:
        matches = pattern.findall(text.strip())
        if matches:
            value = float(matches[-1])
            low, high = SCORE_RANGE
            return value if low <= value <= high else math.nan
    return math.nan


# --- mt-bench questions -------------------------------------------------------------------------


@dataclass(frozen=True)
class MtBenchQuestion:
    id: str
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...]


def read_mt_bench_questions(path: Path | None = None) -> list[MtBenchQuestion]:
    """Our question file: one JSON object a line, {"id"?, "category", "turns", "reference"}."""
    path = path or prompts_dir() / MT_BENCH_QUESTIONS
    questions: list[MtBenchQuestion] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        category, turns, reference = row.get("category"), row.get("turns"), row.get("reference")
        if not isinstance(category, str) or not category:
            raise ConfigError(f"{where}: 'category' must be a non-empty string")
        if not _strings(turns) or not turns:
            raise ConfigError(f"{where}: 'turns' must be a non-empty list of strings")
        if not _strings(reference) or len(reference) != len(turns):
            raise ConfigError(
                f"{where}: 'reference' must be a list of strings, one per turn ({len(turns)})"
            )
        questions.append(
            MtBenchQuestion(
                id=str(row.get("id", f"line-{number}")),
                category=category,
                turns=tuple(turns),
                reference=tuple(reference),
            )
        )
    if not questions:
        raise ConfigError(f"{path}: no questions")
    return questions


def _strings(value) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


def mt_bench_conversations(path: Path | None = None) -> list[Conversation]:
    """The mt-bench validation set: one conversation per turn of each question.

    Turn k of a question becomes a conversation with the first k user turns; the earlier turns are
    answered with their reference answers (validation feeds history teacher-forced), and the last
    answer, the target, is turn k's reference. No system prompt.
    """
    conversations = []
    for q in read_mt_bench_questions(path):
        for k in range(1, len(q.turns) + 1):
            conversations.append(Conversation(None, q.turns[:k], q.reference[:k]))
    return conversations


def _mt_bench_context(path: Path | None = None) -> dict[str, tuple[str, str]]:
    """For each turn text of the question file: (category, the earlier turns as text)."""
    context: dict[str, tuple[str, str]] = {}
    for q in read_mt_bench_questions(path):
        for k, turn in enumerate(q.turns):
            earlier = [f"User: {q.turns[i]}\nAssistant: {q.reference[i]}" for i in range(k)] or [
                "(none: this is the first turn)"
            ]
            context.setdefault(turn, (q.category, "\n\n".join(earlier)))
    return context


# --- judging ------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    score: float = math.nan
    answer: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class _JudgeSetup:
    """Whom to ask and how: the prediction settings and the environment, read and checked."""

    template_name: str
    template: str
    model: str
    max_rows: int  # 0: all
    workers: int
    retries: int
    timeout: float
    key: str
    base: str

    @classmethod
    def read(cls, prediction_cfg: Any) -> _JudgeSetup:
        """Raises ConfigError for a missing template or a bad environment value."""
        template_name = prediction_cfg.metric_gpt_template
        return cls(
            template_name=template_name,
            template=load_template(template_name),
            model=prediction_cfg.metric_gpt_model,
            max_rows=max_rows(),
            workers=_int_env(ENV_WORKERS, DEFAULT_WORKERS, 1),
            retries=_int_env(ENV_RETRIES, DEFAULT_RETRIES, 0),
            timeout=_timeout(),
            key=os.environ[ENV_API_KEY].strip(),
            base=os.environ[ENV_API_BASE].strip(),
        )


def judge_scores(
    *, predictions, targets, prompts, prediction_cfg: PredictionSection, **_
) -> list[float]:
    """One score per row: the judge's 0-10 grade for judged rows, NaN for the rest.

    The first `max_rows()` rows are judged (all when it is 0); their mean is the metric's value,
    so the caller must average with NaN ignored (np.nanmean).
    """
    reason = judge_unavailable_reason()
    if reason:
        raise ConfigError(f"metric GPT: {reason}")
    if not len(predictions) == len(targets) == len(prompts):
        raise ValueError(
            f"judge_scores: {len(predictions)} predictions, {len(targets)} targets and "
            f"{len(prompts)} prompts; expected one of each per row"
        )
    setup = _JudgeSetup.read(prediction_cfg)
    total = len(predictions)
    judged = total if setup.max_rows == 0 else min(setup.max_rows, total)
    messages = _judge_messages(setup.template, predictions, targets, prompts, judged)
    _log_plan(setup, judged, total)
    outcomes = _ask_judge(setup, messages)
    _log_outcomes(outcomes, setup.key)
    return [o.score for o in outcomes] + [math.nan] * (total - judged)


def _judge_messages(
    template: str, predictions: Any, targets: Any, prompts: Any, rows: int
) -> list[list[ChatCompletionMessageParam]]:
    """The chat request of each of the first `rows` rows: the template filled with its values."""
    context = _mt_bench_context() if _uses(template, "history", "category") else {}
    messages: list[list[ChatCompletionMessageParam]] = []
    for i in range(rows):
        category, history = context.get(prompts[i], ("general", "(none)"))
        values = {
            "question": prompts[i],
            "reference": targets[i],
            "answer": predictions[i],
            "history": history,
            "category": category,
        }
        messages.append([{"role": "user", "content": fill_template(template, values)}])
    return messages


def _log_plan(setup: _JudgeSetup, judged: int, total: int) -> None:
    log.info(
        "metric GPT: judging %d of %d validation rows with %r at %s (template %r)",
        judged,
        total,
        setup.model,
        _public_url(setup.base),
        setup.template_name,
    )
    if judged < total:
        log.info(
            "metric GPT: the other %d rows score NaN and are left out of the mean (%s=%d)",
            total - judged,
            ENV_MAX_ROWS,
            setup.max_rows,
        )


def _ask_judge(
    setup: _JudgeSetup, messages: list[list[ChatCompletionMessageParam]]
) -> list[_Outcome]:
    """One outcome per request, sent `setup.workers` at a time. Once the judge refuses the key,
    model or endpoint, the requests not sent yet are skipped: they would fail alike."""
    import openai

    fatal = threading.Event()
    # The client retries connection errors, timeouts, 408, 409, 429 and 5xx itself, with
    # exponential backoff and the server's Retry-After honoured.
    client = openai.OpenAI(
        api_key=setup.key, base_url=setup.base, max_retries=setup.retries, timeout=setup.timeout
    )

    def judge_one(row: int) -> _Outcome:
        if fatal.is_set():
            return _Outcome(error="skipped after an earlier error that retrying cannot fix")
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=setup.model,
                messages=messages[row],
                temperature=0.0,
            )
        except openai.APIStatusError as err:
            if err.status_code in (401, 403, 404):
                fatal.set()  # wrong key, model or endpoint: every other row fails alike
            return _Outcome(error=f"{type(err).__name__}: {err}")
        except openai.OpenAIError as err:
            return _Outcome(error=f"{type(err).__name__}: {err}")
        if raw.retries_taken:
            log.info(
                "metric GPT: row %d: answered after %d retried request(s)", row, raw.retries_taken
            )
        choices = raw.parse().choices or []
        answer = (choices[0].message.content if choices else None) or ""
        return _Outcome(score=parse_score(answer), answer=answer)

    try:
        with ThreadPoolExecutor(max_workers=min(setup.workers, max(len(messages), 1))) as pool:
            return list(pool.map(judge_one, range(len(messages))))
    finally:
        client.close()


def _log_outcomes(outcomes: list[_Outcome], key: str) -> None:
    """Why each unscored row has no score, then the mean over the scored ones."""
    failed = unparsable = 0
    for row, outcome in enumerate(outcomes):
        if outcome.error is not None:
            failed += 1
            log.warning("metric GPT: row %d not judged: %s", row, _scrub(outcome.error, key))
        elif math.isnan(outcome.score):
            unparsable += 1
            log.warning(
                "metric GPT: row %d: no 0-10 score in the judge's answer: %r",
                row,
                _scrub(_shorten(outcome.answer or ""), key),
            )
    valid = [o.score for o in outcomes if not math.isnan(o.score)]
    if valid:
        log.info(
            "metric GPT: %d rows scored, mean %.4f (%d unparsable, %d failed)",
            len(valid),
            sum(valid) / len(valid),
            unparsable,
            failed,
        )
    else:
        log.error(
            "metric GPT: no row got a score (%d unparsable, %d failed); the metric is NaN",
            unparsable,
            failed,
        )


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _scrub(text: str, key: str) -> str:
    """Text safe to log: the API key, should a server echo it back, is masked."""
    return text.replace(key, "***") if key else text
