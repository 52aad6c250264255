"""Data connectors: upload, local (confined to roots), S3 against moto's server, Kaggle against
a stand-in of its API, and the Kaggle command parser. Servers listen on 127.0.0.1 only."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llm_studio.connectors import (
    CONNECTORS,
    ConnectorError,
    KaggleCommand,
    get_connector,
    list_dir,
    local_roots,
    parse_kaggle_command,
)
from llm_studio.data.readers import DataError

CSV = b"instruction,output\nSay hi.,hi\nSay bye.,bye\n"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def test_registry_names():
    assert set(CONNECTORS) == {"upload", "local", "s3", "kaggle"}
    with pytest.raises(ConnectorError, match="unknown data source 'ftp'"):
        get_connector("ftp")
    assert issubclass(ConnectorError, DataError)
    for cls in CONNECTORS.values():
        assert cls.params and cls.label


# --- upload ---


def test_upload_copies_received_files(tmp_path):
    received = tmp_path / "wave-upload-123"
    received.write_bytes(CSV)
    other = tmp_path / "b.zip"
    other.write_bytes(b"PK")
    staging = tmp_path / "staging"
    out = get_connector("upload").fetch(
        {"paths": [str(received), other], "names": ["train.csv", "b.zip"]}, staging
    )
    assert [p.name for p in out] == ["train.csv", "b.zip"]
    assert out[0].read_bytes() == CSV and received.exists()

    moved = tmp_path / "t.csv"
    moved.write_bytes(CSV)
    out = get_connector("upload").fetch({"paths": [moved], "move": True}, staging)
    assert out[0] == staging / "t.csv" and out[0].read_bytes() == CSV
    assert not moved.exists()


def test_upload_refusals(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("x")
    upload = get_connector("upload")
    with pytest.raises(ConnectorError, match="notes.txt.*not a supported file"):
        upload.fetch({"paths": [bad]}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="not received"):
        upload.fetch({"paths": [tmp_path / "gone.csv"]}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="no file was uploaded"):
        upload.fetch({"paths": []}, tmp_path / "s")
    big = tmp_path / "big.csv"
    big.write_bytes(b"a,b\n" + b"1,2\n" * 1000)
    with pytest.raises(ConnectorError, match="larger than the limit"):
        get_connector("upload", max_bytes=100).fetch({"paths": [big]}, tmp_path / "s")
    assert not (tmp_path / "s" / "big.csv").exists()


# --- local ---


@pytest.fixture
def roots(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "data" / "nested").mkdir(parents=True)
    (root / "data" / "train.csv").write_bytes(CSV)
    (root / "data" / "nested" / "val.csv").write_bytes(CSV)
    (root / "data" / "readme.txt").write_text("not data")
    (root / "data" / ".hidden.csv").write_bytes(CSV)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_bytes(CSV)
    monkeypatch.setenv("H2O_LLM_STUDIO_LOCAL_ROOTS", f"{root}:{tmp_path / 'also'}")
    return root, outside


def test_local_file_and_folder_inside_roots(roots, tmp_path):
    root, _ = roots
    local = get_connector("local")
    out = local.fetch({"path": str(root / "data" / "train.csv")}, tmp_path / "s1")
    assert [p.name for p in out] == ["train.csv"] and out[0].read_bytes() == CSV
    out = local.fetch({"path": str(root / "data")}, tmp_path / "s2")
    rel = sorted(p.relative_to(tmp_path / "s2").as_posix() for p in out)
    assert rel == ["nested/val.csv", "train.csv"]


def test_local_escapes_are_refused(roots, tmp_path):
    root, outside = roots
    local = get_connector("local")
    with pytest.raises(ConnectorError, match="outside the allowed folders"):
        local.fetch({"path": f"{root}/../outside/secret.csv"}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="outside the allowed folders"):
        local.fetch({"path": str(outside)}, tmp_path / "s")
    link = root / "data" / "link.csv"
    link.symlink_to(outside / "secret.csv")
    with pytest.raises(ConnectorError, match="outside the allowed folders"):
        local.fetch({"path": str(link)}, tmp_path / "s")
    # A link inside a folder that leads out stops the folder import too.
    with pytest.raises(ConnectorError, match="link.csv.*outside the allowed folders"):
        local.fetch({"path": str(root / "data")}, tmp_path / "s3")
    (root / "dirlink").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConnectorError, match="outside the allowed folders"):
        local.fetch({"path": str(root / "dirlink" / "secret.csv")}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="not an absolute path"):
        local.fetch({"path": "data/train.csv"}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="does not exist"):
        local.fetch({"path": str(root / "nope.csv")}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="not a supported file"):
        local.fetch({"path": str(root / "data" / "readme.txt")}, tmp_path / "s")
    assert not any((tmp_path / "s").rglob("secret*"))


def test_list_dir(roots):
    root, outside = roots
    (root / "data" / "out.csv").symlink_to(outside / "secret.csv")
    assert [e.path for e in list_dir()] == [root]  # the missing root is left out
    entries = list_dir(root / "data")
    assert [(e.name, e.is_dir) for e in entries] == [
        ("nested", True),
        ("train.csv", False),
    ]
    assert entries[1].size == len(CSV)
    with pytest.raises(ConnectorError, match="outside the allowed folders"):
        list_dir(outside)
    with pytest.raises(ConnectorError, match="outside the allowed folders"):
        list_dir(f"{root}/..")


def test_default_roots_are_home_and_workdir(tmp_path, monkeypatch):
    for name in ("H2O_LLM_STUDIO_LOCAL_ROOTS", "LLM_STUDIO_LOCAL_ROOTS"):  # the new and old name
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path / "work"))
    assert local_roots() == [(tmp_path / "home").resolve(), (tmp_path / "work").resolve()]


# --- S3 against moto's server ---


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_buckets(s3_server, monkeypatch):
    import boto3

    for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="AKIATESTKEY",
        aws_secret_access_key="test-secret",
        region_name="us-east-1",
    )
    names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    if "private-data" not in names:
        client.create_bucket(Bucket="private-data")
        client.put_object(Bucket="private-data", Key="sets/train.csv", Body=CSV)
        client.create_bucket(Bucket="public-data")
        # Anonymous (unsigned) reads need a public object: moto honours the canned ACL.
        client.put_object(Bucket="public-data", Key="train.csv", Body=CSV, ACL="public-read")
        client.put_object(Bucket="public-data", Key="closed.csv", Body=CSV)
    return s3_server


def test_s3_with_keys(s3_buckets, tmp_path):
    params = {
        "bucket": "private-data/sets",
        "key": "train.csv",
        "access_key": "AKIATESTKEY",
        "secret_key": "test-secret",
        "endpoint_url": s3_buckets,
    }
    out = get_connector("s3").fetch(params, tmp_path / "s")
    assert [p.name for p in out] == ["train.csv"] and out[0].read_bytes() == CSV


def test_s3_anonymous_public_object(s3_buckets, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_buckets)  # the endpoint may come from the env
    params = {"bucket": "s3://public-data", "key": "train.csv", "access_key": "", "secret_key": ""}
    out = get_connector("s3").fetch(params, tmp_path / "s")
    assert out[0].read_bytes() == CSV


def test_s3_refusals(s3_buckets, tmp_path):
    s3 = get_connector("s3")
    base = {"endpoint_url": s3_buckets}
    with pytest.raises(ConnectorError, match="access denied; anonymous access needs a public"):
        s3.fetch({**base, "bucket": "public-data", "key": "closed.csv"}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="access denied"):
        s3.fetch({**base, "bucket": "private-data", "key": "sets/train.csv"}, tmp_path / "s")
    keys = {"access_key": "AKIATESTKEY", "secret_key": "test-secret"}
    with pytest.raises(ConnectorError, match="no such file"):
        s3.fetch({**base, **keys, "bucket": "private-data", "key": "gone.csv"}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="no such bucket"):
        s3.fetch({**base, **keys, "bucket": "nobucket", "key": "a.csv"}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="both the access key and the access secret"):
        s3.fetch({**base, "bucket": "b1", "key": "a.csv", "access_key": "x"}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="not a supported file"):
        s3.fetch({**base, "bucket": "public-data", "key": "a.exe"}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="not a valid bucket name"):
        s3.fetch({**base, "bucket": "b;rm", "key": "a.csv"}, tmp_path / "s")
    with pytest.raises(ConnectorError, match="larger than the limit"):
        get_connector("s3", max_bytes=10).fetch(
            {**base, **keys, "bucket": "private-data/sets", "key": "train.csv"}, tmp_path / "s"
        )
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


# --- Kaggle against a stand-in of its API ---

KAGGLE_USER = "jane-doe"
KAGGLE_KEY = "k3y-0123456789abcdef-SECRET"


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


class _KaggleStandIn(BaseHTTPRequestHandler):
    """The endpoints kagglesdk calls for downloads: POST /v1/<service>/<method> with a JSON
    body and Basic auth, answered by a redirect to the file (as Kaggle redirects to storage)."""

    received: list[dict] = []
    files: dict[str, bytes] = {}

    def log_message(self, *args):  # keep the test output quiet
        pass

    def _auth_ok(self) -> bool:
        expected = base64.b64encode(f"{KAGGLE_USER}:{KAGGLE_KEY}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.received.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        if not self._auth_ok():
            self._send(401, b'{"code": 401, "message": "Unauthenticated"}', "application/json")
            return
        if self.path == "/v1/datasets.DatasetApiService/DownloadDataset":
            slug = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
            name = body.get("fileName") or "all"
            target = f"/blobs/datasets/{slug}/{name}"
        elif self.path == "/v1/competitions.CompetitionApiService/DownloadDataFiles":
            target = f"/blobs/competitions/{body.get('competitionName')}/all"
        elif self.path == "/v1/competitions.CompetitionApiService/DownloadDataFile":
            target = f"/blobs/competitions/{body.get('competitionName')}/{body.get('fileName')}"
        else:
            self._send(404, b'{"code": 404, "message": "no such method"}', "application/json")
            return
        if target not in self.files:
            self._send(404, b'{"code": 404, "message": "Not found"}', "application/json")
            return
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.received.append({"path": self.path, "auth": self.headers.get("Authorization")})
        data = self.files.get(self.path)
        if data is None:
            self._send(404, b"not found", "text/plain")
        else:
            kind = "application/zip" if data.startswith(b"PK") else "text/csv"
            self._send(200, data, kind)

    def _send(self, status: int, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def kaggle_server(tmp_path, monkeypatch):
    _KaggleStandIn.received = []
    _KaggleStandIn.files = {
        "/blobs/datasets/jane-doe/chat-pairs/all": _zip_bytes(
            {"train.csv": CSV, "validation.csv": CSV}
        ),
        "/blobs/datasets/jane-doe/chat-pairs/train.csv": CSV,
        "/blobs/competitions/llm-contest/all": _zip_bytes({"train.csv": CSV}),
        "/blobs/competitions/llm-contest/big.csv": _zip_bytes({"big.csv": CSV}),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KaggleStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # the SDK may look for ~/.kaggle; keep it empty
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("H2O_LLM_STUDIO_KAGGLE_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield _KaggleStandIn
    server.shutdown()
    server.server_close()


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_kaggle_dataset_download(kaggle_server, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    staging = tmp_path / "staging"
    params = {
        "command": "kaggle datasets download -d jane-doe/chat-pairs",
        "username": KAGGLE_USER,
        "key": KAGGLE_KEY,
    }
    out = get_connector("kaggle").fetch(params, staging)
    assert [p.name for p in out] == ["chat-pairs.zip"]
    with zipfile.ZipFile(out[0]) as zf:
        assert sorted(zf.namelist()) == ["train.csv", "validation.csv"]

    first = kaggle_server.received[0]
    assert first["path"] == "/v1/datasets.DatasetApiService/DownloadDataset"
    assert first["body"] == {"ownerSlug": "jane-doe", "datasetSlug": "chat-pairs"}
    user, key = base64.b64decode(first["auth"].split(" ", 1)[1]).decode().split(":", 1)
    assert (user, key) == (KAGGLE_USER, KAGGLE_KEY)

    # A single file, served as is; and a competition file Kaggle wrapped in a zip.
    params["command"] = "kaggle datasets download -d jane-doe/chat-pairs -f train.csv"
    assert get_connector("kaggle").fetch(params, staging)[0].read_bytes() == CSV
    params["command"] = "kaggle competitions download -c llm-contest -f big.csv"
    assert get_connector("kaggle").fetch(params, staging)[0].name == "big.csv.zip"
    params["command"] = "kaggle competitions download -c llm-contest"
    assert get_connector("kaggle").fetch(params, staging)[0].name == "llm-contest.zip"

    secret = KAGGLE_KEY.encode()
    captured = capfd.readouterr()
    assert KAGGLE_KEY not in caplog.text
    assert KAGGLE_KEY not in captured.out + captured.err
    assert _files_holding(tmp_path, secret) == []  # staging, home, everything under the test


def test_kaggle_errors_do_not_leak_the_key(kaggle_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    kaggle = get_connector("kaggle")
    bad = {"command": "kaggle datasets download -d jane-doe/chat-pairs", "username": KAGGLE_USER}
    with pytest.raises(ConnectorError, match="refused the username and key") as err:
        kaggle.fetch({**bad, "key": "wrong-" + KAGGLE_KEY}, tmp_path / "s")
    assert KAGGLE_KEY not in str(err.value)
    with pytest.raises(ConnectorError, match="not found on Kaggle"):
        kaggle.fetch(
            {**bad, "key": KAGGLE_KEY, "command": "kaggle datasets download -d jane-doe/none"},
            tmp_path / "s",
        )
    with pytest.raises(ConnectorError, match="secret key is required"):
        kaggle.fetch({**bad, "key": ""}, tmp_path / "s")
    assert KAGGLE_KEY not in caplog.text
    assert _files_holding(tmp_path, KAGGLE_KEY.encode()) == []


@pytest.mark.parametrize(
    "command, expected",
    [
        ("kaggle datasets download -d owner/name", KaggleCommand("datasets", "owner/name")),
        (
            "  kaggle datasets download -d philipp-singer/oasst2 -f train_full.csv ",
            KaggleCommand("datasets", "philipp-singer/oasst2", "train_full.csv"),
        ),
        (
            "kaggle datasets download -f data/train.parquet -d o_1/n.v2",
            KaggleCommand("datasets", "o_1/n.v2", "data/train.parquet"),
        ),
        ("kaggle competitions download -c titanic", KaggleCommand("competitions", "titanic")),
        (
            "kaggle competitions download -c llm-x -f test.csv",
            KaggleCommand("competitions", "llm-x", "test.csv"),
        ),
    ],
)
def test_kaggle_command_accepted(command, expected):
    assert parse_kaggle_command(command) == expected


@pytest.mark.parametrize(
    "command, message",
    [
        ("kaggle datasets download -d owner/name; rm -rf ~", "shell syntax"),
        ("kaggle datasets download -d owner/name && curl x", "shell syntax"),
        ("kaggle datasets download -d owner/name | sh", "shell syntax"),
        ("kaggle datasets download -d $(whoami)/name", "shell syntax"),
        ("kaggle datasets download -d `id`/name", "shell syntax"),
        ("kaggle datasets download -d owner/name > /etc/passwd", "shell syntax"),
        ("kaggle datasets download -d 'owner/name'", "shell syntax"),
        ("kaggle datasets download -d owner/name\nrm x", "shell syntax"),
        ("kaggle datasets download -d owner/*", "shell syntax"),
        ("kaggle datasets list", "not supported"),
        ("kaggle kernels pull owner/name", "not supported"),
        ("kaggle competitions submit -c titanic -f a.csv", "not supported"),
        ("python -m kaggle datasets download -d owner/name", "must start with `kaggle`"),
        ("kaggle datasets download owner/name", "option 'owner/name' is not supported"),
        ("kaggle datasets download -d owner/name --unzip", "option '--unzip' is not supported"),
        ("kaggle datasets download -d owner/name -p /tmp", "option '-p' is not supported"),
        ("kaggle datasets download -c titanic", "option '-c' is not supported"),
        ("kaggle competitions download -d owner/name", "option '-d' is not supported"),
        ("kaggle datasets download -d a/b -d c/d", "given twice"),
        ("kaggle datasets download -f a.csv", "`-d` is missing"),
        ("kaggle datasets download -d", "needs a value"),
        ("kaggle datasets download -d owner", "is not <owner>/<dataset>"),
        ("kaggle datasets download -d ../name", "is not <owner>/<dataset>"),
        ("kaggle datasets download -d owner/..", "is not <owner>/<dataset>"),
        ("kaggle datasets download -d owner/name -f ../../x.csv", "not a valid file name"),
        ("kaggle datasets download -d owner/name -f /etc/x.csv", "not a valid file name"),
        ("kaggle datasets download -d owner/name -f model.bin", "not a supported file"),
        ("", "required"),
    ],
)
def test_kaggle_command_refused(command, message):
    with pytest.raises(ConnectorError, match=message.replace("$", r"\$").replace("*", r"\*")):
        parse_kaggle_command(command)


def test_connectors_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, llm_studio.connectors, llm_studio.store.imports; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def _in_thread(fn, timeout: float = 20):
    """Run `fn` in a thread; fail (instead of hanging the suite) if it blocks."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except Exception as exc:  # handed to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the import hung"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_local_named_pipe_neither_hangs_nor_is_imported(roots, tmp_path):
    root, _ = roots
    os.mkfifo(root / "data" / "pipe.csv")  # nobody ever writes to it
    local = get_connector("local")
    out = _in_thread(lambda: local.fetch({"path": str(root / "data")}, tmp_path / "s1"))
    assert sorted(p.name for p in out) == ["train.csv", "val.csv"]
    with pytest.raises(ConnectorError, match="neither a file nor a folder"):
        _in_thread(lambda: local.fetch({"path": str(root / "data" / "pipe.csv")}, tmp_path / "s2"))
    # A link named .csv leading to the pipe is not read either.
    (root / "data" / "pipe-link.csv").symlink_to(root / "data" / "pipe.csv")
    out = _in_thread(lambda: local.fetch({"path": str(root / "data")}, tmp_path / "s3"))
    assert sorted(p.name for p in out) == ["train.csv", "val.csv"]
    assert "pipe.csv" not in [e.name for e in list_dir(root / "data")]


def test_local_link_is_judged_by_its_target_not_its_name(roots, tmp_path):
    root, _ = roots
    secret = root / "home" / ".ssh" / "id_rsa"  # inside the roots, like ~/.ssh under $HOME
    secret.parent.mkdir(parents=True)
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (root / "data" / "key.csv").symlink_to(secret)
    local = get_connector("local")
    out = local.fetch({"path": str(root / "data")}, tmp_path / "s1")
    assert sorted(p.name for p in out) == ["train.csv", "val.csv"]
    with pytest.raises(ConnectorError, match="not a supported file"):
        local.fetch({"path": str(root / "data" / "key.csv")}, tmp_path / "s2")
    assert "key.csv" not in [e.name for e in list_dir(root / "data")]
    assert not any("PRIVATE KEY" in p.read_text() for p in tmp_path.rglob("s*/*.csv"))
