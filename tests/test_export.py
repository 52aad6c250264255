"""Model export: the model and adapter zips, the model card, and publishing to a stand-in Hub.

The Hub is a pytest-httpserver on 127.0.0.1 that speaks the part of the Hub API the
`huggingface_hub` client uses to publish (whoami, create repo, validate README metadata,
preupload, commit) and keeps what it receives. Nothing leaves the machine.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import load_cfg, pattern_rows, run_cli, tiny_config
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.export.hub import HubError, push_to_hub
from llm_studio.export.package import (
    AdapterUnavailable,
    CheckpointUnavailable,
    build_adapter_zip,
    build_files_zip,
    build_logs_zip,
    build_model_zip,
    build_predictions_zip,
)
from llm_studio.training.loop import run_experiment

TOKEN = "hf_StandInSecretToken0123456789abcdef"
USER = "stand-in-user"
QUESTION = "Repeat red 2 times."


# --- a trained experiment, shared by the module ---


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir) -> ExperimentFolder:
    root = tmp_path_factory.mktemp("export")
    csv = root / "pattern.csv"
    pattern_rows().to_csv(csv, index=False)
    data = tiny_config(
        tiny_model_dir,
        csv,
        root / "experiment",
        training={"epochs": 1, "lora": True, "lora_r": 8, "lora_alpha": 32},
        prediction={"max_length_inference": 2},
    )
    cfg = load_cfg(data)
    status = run_experiment(cfg, ExperimentStatus(state="running"))
    assert status.state == "finished"
    return ExperimentFolder(cfg.output_directory)


def greedy_tokens(model_dir: Path, n: int = 6) -> list[int]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def unzip(path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(path) as zf:
        zf.extractall(dest)
    return dest


def usage_code(readme: str) -> str:
    """The python block of the card's Usage section."""
    usage = readme.split("## Usage", 1)[1]
    return re.search(r"```python\n(.*?)\n```", usage, re.S).group(1)


def run_snippet(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "snippet"})
    return out.getvalue()


# --- downloads ---


def test_model_zip_loads_with_transformers_and_generates_like_the_checkpoint(
    trained, tiny_model_dir, tmp_path
):
    fractions: list[float] = []
    path = build_model_zip(trained.path, tmp_path / "model.zip", progress=fractions.append)
    assert path == tmp_path / "model.zip"
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"], "no temp file left behind"
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)

    folder = unzip(path, tmp_path / "unzipped")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert {"README.md", "cfg.yaml", "generation_config.json"} <= names
    assert (folder / "cfg.yaml").read_bytes() == trained.cfg_yaml.read_bytes()
    assert (folder / "model.safetensors").read_bytes() == (
        trained.checkpoint_dir / "model.safetensors"
    ).read_bytes()

    readme = (folder / "README.md").read_text()
    assert str(tiny_model_dir) in readme, "the card names the backbone"
    for expected in ("Causal Language Modeling", "LoRA: r 8, alpha 32", "Validation BLEU"):
        assert expected in readme
    assert "AutoModelForCausalLM" in readme and "apply_chat_template" in readme
    assert "<|prompt|>How are you?</s><|answer|>" in readme, "the prompt format, rendered"
    assert "license: other" in readme
    assert str(trained.path) not in readme, "data and output folders stay private"

    assert greedy_tokens(folder) == greedy_tokens(trained.checkpoint_dir)

    # The card's own example runs against the unzipped folder as written.
    code = usage_code(readme).replace("path/to/unzipped/model", str(folder))
    run_snippet(code)


def test_model_cards_code_answers_exactly_like_the_chat_with_stop_texts_and_min_length(
    trained, tmp_path
):
    """The card's example generates with the experiment's prediction settings, the minimum
    length and stop texts included, and prints what the Chat tab answers."""
    from llm_studio.export.model_card import EXAMPLE_QUESTION
    from llm_studio.models.chat import ChatSession

    copy = tmp_path / "experiment"
    shutil.copytree(trained.path, copy)
    cfg = yaml.safe_load((copy / "cfg.yaml").read_text())
    cfg["prediction"].update(max_length_inference=12, min_length_inference=12, stop_tokens="")
    (copy / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    unstopped = ChatSession.from_experiment(copy).ask(EXAMPLE_QUESTION)
    assert len(unstopped) > 4, "the tiny model writes something to cut"
    stop = unstopped[len(unstopped) // 2 :][:2]  # a text in the middle of the answer
    cfg["prediction"]["stop_tokens"] = f"{stop},<never>"
    (copy / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    chat_answer = ChatSession.from_experiment(copy).ask(EXAMPLE_QUESTION)
    assert len(chat_answer) < len(unstopped), "the stop text ends the answer"

    folder = unzip(build_model_zip(copy, tmp_path / "model.zip"), tmp_path / "unzipped")
    code = usage_code((folder / "README.md").read_text())
    assert "min_new_tokens=12" in code and "stop_strings=" in code
    printed = run_snippet(code.replace("path/to/unzipped/model", str(folder)))
    assert printed.rstrip("\n") == chat_answer


def test_model_zip_holds_every_evaluation_checkpoint(trained, tmp_path):
    copy = tmp_path / "experiment"
    shutil.copytree(trained.path, copy)
    shutil.copytree(trained.checkpoint_dir, copy / "checkpoint_epoch_0.50")
    path = build_model_zip(copy, tmp_path)  # a folder as dest: the zip is named after the run
    assert path == tmp_path / "experiment_model.zip"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert {"config.json", "checkpoint_epoch_0.50/config.json", "README.md"} <= names
    assert "checkpoint_epoch_0.50/model.safetensors" in names


def test_adapter_zip_holds_the_peft_adapter_and_runs_on_the_backbone(trained, tmp_path):
    path = build_adapter_zip(trained.path, tmp_path / "adapter.zip")
    folder = unzip(path, tmp_path / "adapter")
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "cfg.yaml"} <= names
    assert {"chat_template.jinja", "tokenizer.json"} <= names
    assert "model.safetensors" not in names and "config.json" not in names
    readme = (folder / "README.md").read_text()
    assert "library_name: peft" in readme and "PeftModel" in readme

    adapter_answer = run_snippet(
        usage_code(readme).replace("path/to/unzipped/adapter", str(folder))
    )
    model = unzip(build_model_zip(trained.path, tmp_path / "m.zip"), tmp_path / "model")
    merged_answer = run_snippet(
        usage_code((model / "README.md").read_text()).replace("path/to/unzipped/model", str(model))
    )
    assert adapter_answer == merged_answer


def test_predictions_logs_and_any_files_zip(trained, tmp_path):
    with zipfile.ZipFile(build_predictions_zip(trained.path, tmp_path / "p.zip")) as zf:
        assert {"validation_predictions.csv", "cfg.yaml"} <= set(zf.namelist())
    with zipfile.ZipFile(build_logs_zip(trained.path, tmp_path / "l.zip")) as zf:
        assert {"charts.jsonl", "status.json", "cfg.yaml"} <= set(zf.namelist())
    path = build_files_zip([trained.cfg_yaml, (b"hello", "notes/a.txt")], tmp_path / "f.zip")
    with zipfile.ZipFile(path) as zf:
        assert zf.read("notes/a.txt") == b"hello"
        assert zf.read("cfg.yaml") == trained.cfg_yaml.read_bytes()


def experiment_without_model(trained, dest: Path, **training) -> Path:
    """A copy of the experiment's cfg.yaml with other training settings, and no saved model."""
    dest.mkdir()
    data = yaml.safe_load(trained.cfg_yaml.read_text())
    data["training"].update(training)
    (dest / "cfg.yaml").write_text(yaml.safe_dump(data))
    return dest


def test_no_checkpoint_is_a_clear_error(trained, tmp_path):
    disabled = experiment_without_model(trained, tmp_path / "disabled", save_checkpoint="disable")
    with pytest.raises(CheckpointUnavailable, match="save_checkpoint is 'disable'"):
        build_model_zip(disabled, tmp_path / "out.zip")
    with pytest.raises(CheckpointUnavailable, match="disable"):
        build_adapter_zip(disabled, tmp_path / "out.zip")
    with pytest.raises(CheckpointUnavailable, match="disable"):
        push_to_hub(disabled, "name", TOKEN)  # refused before any request
    assert not (tmp_path / "out.zip").exists()

    running = experiment_without_model(trained, tmp_path / "running")
    ExperimentFolder(running).write_status(
        ExperimentStatus(state="running", pid=os.getpid(), pid_start_time=_own_start_time())
    )
    with pytest.raises(CheckpointUnavailable, match="not saved a checkpoint yet"):
        build_model_zip(running, tmp_path / "out.zip")

    full = experiment_without_model(trained, tmp_path / "full", lora=False)
    shutil.copytree(trained.checkpoint_dir, full / "checkpoint")
    build_model_zip(full, tmp_path / "full.zip")
    with pytest.raises(AdapterUnavailable, match="without LoRA"):
        build_adapter_zip(full, tmp_path / "out.zip")

    result = run_cli("publish_to_hugging_face.py", "-p", str(disabled), "-n", "x", "-t", TOKEN)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "disable" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- the stand-in Hub ---


class StandInHub:
    """Enough of the Hub API for `HfApi.whoami`, `create_repo` and `create_commit`, served by a
    pytest-httpserver. A request to any other route is answered 404 and listed in `unexpected`."""

    def __init__(self, server: HTTPServer):
        self.server = server
        self.url = server.url_for("/").rstrip("/")
        self.created: list[dict] = []
        self.files: dict[str, dict[str, bytes]] = {}  # repo id -> path -> content
        self.bad_commit_items: list[str] = []
        server.no_handler_status_code = 404
        routes = [
            ("GET", "/api/whoami-v2", self.whoami),
            ("POST", "/api/repos/create", self.create_repo),
            ("POST", "/api/validate-yaml", lambda request: {"errors": [], "warnings": []}),
            ("POST", re.compile(r"/api/models/[^/]+/[^/]+/preupload/[^/]+$"), self.preupload),
            ("POST", re.compile(r"/api/models/([^/]+/[^/]+)/commit/[^/]+$"), self.commit),
        ]
        for method, uri, answer in routes:
            server.expect_request(uri, method=method).respond_with_handler(self.authorized(answer))

    @property
    def requests(self) -> list[dict]:
        return [
            {"method": r.method, "path": r.path, "auth": r.headers.get("Authorization")}
            for r, _ in list(self.server.log)
        ]

    @property
    def unexpected(self) -> list[str]:
        return [str(a) for a in self.server.assertions] + self.bad_commit_items

    @staticmethod
    def authorized(answer):
        def respond(request: Request) -> Response:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                data, status = {"error": "Invalid credentials in Authorization header"}, 401
            else:
                data, status = answer(request), 200
            return Response(json.dumps(data), status=status, content_type="application/json")

        return respond

    def whoami(self, request: Request) -> dict:
        return {"name": USER, "type": "user", "orgs": []}

    def create_repo(self, request: Request) -> dict:
        payload = request.get_json()
        self.created.append(payload)
        repo_id = f"{payload['organization']}/{payload['name']}"
        return {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def preupload(self, request: Request) -> dict:
        # Every file goes inline (base64) in the commit: the tiny model is small.
        files = request.get_json()["files"]
        return {
            "files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
            ]
        }

    def commit(self, request: Request) -> dict:
        repo_id = re.match(r"/api/models/([^/]+/[^/]+)/", request.path).group(1)
        stored = self.files.setdefault(repo_id, {})
        for line in request.get_data().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                value = item["value"]
                assert value["encoding"] == "base64"
                stored[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] != "header":
                self.bad_commit_items.append(f"commit item {item['key']}")
        oid = "0123456789abcdef0123456789abcdef01234567"
        return {
            "commitUrl": f"{self.url}/{repo_id}/commit/{oid}",
            "commitOid": oid,
            "pullRequestUrl": None,
        }


@pytest.fixture
def hub():
    # Our own instance rather than the plugin's `httpserver` fixture, which listens on
    # "localhost": the house rule is 127.0.0.1.
    with HTTPServer(host="127.0.0.1", port=0, threaded=True) as server:
        yield StandInHub(server)


@pytest.fixture
def hub_env(hub, tmp_path, monkeypatch):
    """The in-process client pointed at the stand-in, online, with HOME in tmp."""
    import huggingface_hub.constants

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return home


def files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_push_to_hub_sends_the_model_and_keeps_the_token_off_disk(
    trained, hub, hub_env, capsys, caplog
):
    caplog.set_level("DEBUG")  # the Hub client's debug log must not show the token either
    fractions: list[float] = []
    url = push_to_hub(trained.path, "tiny-chat", TOKEN, progress=fractions.append)

    assert url == f"{hub.url}/{USER}/tiny-chat", "account defaults to the token's user"
    assert not hub.unexpected, hub.unexpected
    assert hub.requests[0]["path"] == "/api/whoami-v2"
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in hub.requests)
    assert hub.created == [
        {"name": "tiny-chat", "organization": USER, "visibility": "private", "type": "model"}
    ]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)

    files = hub.files[f"{USER}/tiny-chat"]
    expected = {p.name for p in trained.checkpoint_dir.iterdir()} | {"README.md", "cfg.yaml"}
    assert set(files) == expected
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= set(
        files
    )
    for name in expected - {"README.md", "cfg.yaml"}:
        assert files[name] == (trained.checkpoint_dir / name).read_bytes(), name
    assert files["cfg.yaml"] == trained.cfg_yaml.read_bytes()
    readme = files["README.md"].decode()
    assert f'model_name = "{USER}/tiny-chat"' in readme and "AutoModelForCausalLM" in readme

    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text
    assert files_holding(trained.path, TOKEN) == []
    assert files_holding(hub_env, TOKEN) == []


def test_push_to_an_account_and_refusals(trained, hub, hub_env, capsys, monkeypatch):
    url = push_to_hub(trained.path, "tiny-chat", TOKEN, account="some-org", private=False)
    assert url == f"{hub.url}/some-org/tiny-chat"
    assert "/api/whoami-v2" not in [r["path"] for r in hub.requests], "no lookup when given"
    assert hub.created[-1]["organization"] == "some-org"
    assert hub.created[-1]["visibility"] == "public"
    assert "model.safetensors" in hub.files["some-org/tiny-chat"]

    wrong = "hf_WrongToken9876543210"
    with pytest.raises(HubError, match="401") as info:
        push_to_hub(trained.path, "tiny-chat", wrong)
    assert wrong not in str(info.value)
    with pytest.raises(HubError, match="not valid on the Hub"):
        push_to_hub(trained.path, "my model", TOKEN)
    with pytest.raises(HubError, match="token"):
        push_to_hub(trained.path, "tiny-chat", "")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(HubError, match="cannot reach the Hub at http://127.0.0.1:9"):
        push_to_hub(trained.path, "tiny-chat", TOKEN)
    assert TOKEN not in "".join(capsys.readouterr())


def test_cli_publishes_end_to_end(trained, hub, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "HF_HOME": str(home / ".cache" / "huggingface"),
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_TOKEN": TOKEN,
    }
    result = run_cli_env(env, "-p", str(trained.path), "-n", "cli-model")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{hub.url}/{USER}/cli-model"
    assert {"model.safetensors", "README.md", "cfg.yaml", "chat_template.jinja"} <= set(
        hub.files[f"{USER}/cli-model"]
    )
    assert TOKEN not in result.stdout + result.stderr
    assert files_holding(home, TOKEN) == [] and files_holding(trained.path, TOKEN) == []

    # A refused token: one line, no traceback, no token.
    env["HF_TOKEN"] = "hf_WrongToken9876543210"
    result = run_cli_env(env, "-p", str(trained.path), "-n", "cli-model")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: publishing failed:") and "401" in result.stderr
    assert "Traceback" not in result.stderr and "hf_WrongToken" not in result.stderr

    # No token at all.
    del env["HF_TOKEN"]
    result = run_cli_env(env, "-p", str(trained.path), "-n", "cli-model")
    assert result.returncode == 1 and "token" in result.stderr and "Traceback" not in result.stderr


def run_cli_env(env: dict, *args: str):
    import subprocess
    import sys

    from conftest import REPO

    return subprocess.run(
        [sys.executable, str(REPO / "publish_to_hugging_face.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _own_start_time() -> float:
    """This process's start time, as train.py records its own (a PID alone reads as ended)."""
    import psutil

    return psutil.Process().create_time()
