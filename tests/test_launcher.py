"""The launcher against the real waved + app: stalls, DNS rebinding, second starts and stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
import websocket
from conftest import REPO
from gui_harness import _free_port, running_app, start_launcher, wait_for_app_port

pytestmark = pytest.mark.slow


def _pids(workdir) -> dict:
    return json.loads((workdir / "data" / "llmstudio.pids").read_text())


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: list[int], timeout: float = 30.0) -> bool:
    deadline = time.time() + timeout
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    return not any(_alive(p) for p in pids)


def _open_page(url: str, timeout: float = 30.0) -> list[dict]:
    """What a browser tab gets: connect to waved's socket, ask for "/", read until content."""
    ws = websocket.create_connection(url.replace("http", "ws", 1) + "_s/", timeout=timeout)
    try:
        ws.send("+ / ")
        messages = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            for message in _messages(ws.recv()):
                messages.append(message)
                if "e" in message or "d" in message:
                    return messages
        return messages
    finally:
        ws.close()


def _messages(frame: str) -> list[dict]:
    """One websocket frame of waved may carry several JSON messages, one a line."""
    return [json.loads(line) for line in frame.splitlines() if line.strip()]


def _raw_http(port: int, host: str, path: str = "/", extra: str = "") -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("launcher")
    stale = workdir / "data" / "wave-files" / "f" / "0123" / "old_model.zip"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by an earlier run")
    with running_app(workdir) as url:
        wait_for_app_port(workdir)
        yield workdir, url


@pytest.mark.parametrize("keep_app_live", ["default", "false"])
def test_gui_recovers_by_itself_from_a_stalled_app(tmp_path, keep_app_live):
    """SIGSTOP the app for 10 s while the user clicks: after SIGCONT a new tab gets pages again.
    With waved's keep-alive switched off, waved drops the app and the launcher registers it again.
    """
    extra = {} if keep_app_live == "default" else {"H2O_WAVE_KEEP_APP_LIVE": keep_app_live}
    with running_app(tmp_path, extra) as url:
        wait_for_app_port(tmp_path)
        assert "d" in _open_page(url)[-1]
        app_pid = _pids(tmp_path)["app"]["pid"]
        ws = websocket.create_connection(url.replace("http", "ws", 1) + "_s/", timeout=30)
        ws.send("+ / ")
        while not any("d" in m for m in _messages(ws.recv())):
            pass
        time.sleep(1)
        os.kill(app_pid, signal.SIGSTOP)
        try:
            for _ in range(10):  # the user keeps clicking into the stalled app
                ws.send('@ / {"#":"datasets"}')
                time.sleep(1)
        finally:
            os.kill(app_pid, signal.SIGCONT)
        ws.close()
        deadline, last = time.time() + 60, None
        while time.time() < deadline:
            last = _open_page(url)[-1]
            if "d" in last:
                break
            time.sleep(1)
        assert last is not None and "d" in last, f"the GUI stayed down after the stall: {last}"


def test_the_launcher_registers_a_dropped_app_again(app):
    """Whatever makes waved drop the app (a stall with keep-alive off, heavy load), the launcher
    sees waved's `app_drop` and registers the app again: here waved is told to drop it."""
    workdir, url = app
    waved = psutil.Process(_pids(workdir)["waved"]["pid"]).environ()
    auth = (waved["H2O_WAVE_ACCESS_KEY_ID"], waved["H2O_WAVE_ACCESS_KEY_SECRET"])
    import httpx

    httpx.post(waved["H2O_WAVE_ADDRESS"], json={"unregister_app": {"route": "/"}}, auth=auth)
    deadline, last = time.time() + 30, None
    while time.time() < deadline:
        last = _open_page(url)[-1]
        if "d" in last:
            break
        time.sleep(0.5)
    assert last is not None and "d" in last, f"the GUI stayed down after waved dropped it: {last}"
    assert "registered it again" in _read(workdir / "launcher.log")


def _read(path) -> str:
    return path.read_text() if path.is_file() else ""


def test_waved_keeps_its_files_under_the_workdir_and_starts_empty(app):
    workdir, _ = app
    waved = psutil.Process(_pids(workdir)["waved"]["pid"]).environ()
    assert waved["H2O_WAVE_DATA_DIR"] == str(workdir / "data" / "wave-files")
    assert not list((workdir / "data" / "wave-files").rglob("old_model.zip"))


def test_foreign_host_is_refused_over_http_and_websocket(app):
    """What a browser sends after DNS rebinding: Host and Origin both evil.example:<port>."""
    workdir, url = app
    port = int(url.rsplit(":", 1)[1].strip("/"))
    evil = f"evil.example:{port}"
    refused = _raw_http(port, evil)
    assert refused.startswith("HTTP/1.1 403"), refused[:200]
    assert "H2O_LLM_STUDIO_ALLOWED_HOSTS" in refused
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(
            f"ws://127.0.0.1:{port}/_s/", host=evil, origin=f"http://{evil}", timeout=30
        )
    assert err.value.status_code == 403
    # Uploaded files are refused the same way (waved serves them under /_f/).
    assert _raw_http(port, evil, "/_f/").startswith("HTTP/1.1 403")
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert _raw_http(port, host).startswith("HTTP/1.1 200"), host
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/_s/", host=f"localhost:{port}", origin=f"http://localhost:{port}"
    )
    ws.send("+ / ")
    assert "i" in _messages(ws.recv())[0]
    ws.close()


def test_cross_site_posts_and_smuggled_second_requests_are_refused(app):
    """A page of another site may post forms to localhost (e.g. uploads into waved): its Origin is
    refused. A second request on a connection never skips the check: one request per connection.
    """
    _, url = app
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        body = "x" * 10
        s.sendall(
            f"POST /_f/ HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: http://evil.example\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        answer = s.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 403") and "Origin http://evil.example" in answer
    two = (
        f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"
        f"GET /_f/ HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(two.encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    answers = b"".join(chunks).decode(errors="replace")
    assert answers.startswith("HTTP/1.1 200") and answers.count("HTTP/1.1 ") == 1


def test_allowed_hosts_env_admits_listed_names(monkeypatch):
    """H2O_LLM_STUDIO_ALLOWED_HOSTS (for Docker or remote use) lets a listed name in, and only it."""
    import asyncio

    from llm_studio.ui import host_guard

    class Upstream(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"upstream"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    monkeypatch.setenv(host_guard.ALLOWED_HOSTS_ENV, "studio.lan, Gpu-Box")
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    listening.setblocking(False)
    port = listening.getsockname()[1]
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()
    extra = host_guard.allowed_hosts()
    guard = threading.Thread(
        target=loop.run_until_complete,
        args=(host_guard.serve(listening, upstream.server_address, extra, stopped),),
        daemon=True,
    )
    guard.start()
    try:
        assert _raw_http(port, f"studio.lan:{port}").endswith("upstream")
        assert _raw_http(port, "gpu-box").endswith("upstream")
        assert _raw_http(port, f"evil.example:{port}").startswith("HTTP/1.1 403")
        assert _raw_http(port, f"studio.lan.evil.example:{port}").startswith("HTTP/1.1 403")
    finally:
        loop.call_soon_threadsafe(stopped.set)
        guard.join(timeout=10)
        loop.close()
        upstream.shutdown()


def test_second_start_says_where_the_running_one_is_and_changes_nothing(app):
    workdir, url = app
    before = _pids(workdir)
    launcher, _ = start_launcher(
        workdir, _free_port(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 1
    port = url.rsplit(":", 1)[1].strip("/")
    assert f"already running at http://localhost:{port}/" in out, out
    assert _pids(workdir) == before
    assert all(_alive(before[name]["pid"]) for name in ("launcher", "waved", "app"))
    assert "d" in _open_page(url)[-1]


def test_start_on_a_taken_port_fails_clearly_and_starts_nothing(app, tmp_path):
    _, url = app
    port = int(url.rsplit(":", 1)[1].strip("/"))
    launcher, _ = start_launcher(
        tmp_path, port, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 1
    assert "did not start" in out and f"127.0.0.1:{port}" in out, out
    assert "LLM Studio is at" not in out
    assert not (tmp_path / "data" / "llmstudio.pids").exists()


def test_sigterm_to_the_launcher_ends_both_servers_and_exits_0(tmp_path):
    launcher, _ = start_launcher(
        tmp_path, _free_port(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in launcher.stdout:
        if "LLM Studio is at" in line:
            break
    pids = _pids(tmp_path)
    launcher.send_signal(signal.SIGTERM)
    out, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, out[-2000:]
    assert "LLM Studio stopped" in out
    assert _wait_gone([pids["waved"]["pid"], pids["app"]["pid"]])
    assert not (tmp_path / "data" / "llmstudio.pids").exists()


def test_a_killed_launcher_leaves_no_servers_behind(tmp_path):
    launcher, env = start_launcher(
        tmp_path, _free_port(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in launcher.stdout:
        if "LLM Studio is at" in line:
            break
    pids = _pids(tmp_path)
    launcher.kill()
    launcher.wait(timeout=30)
    servers = [pids["waved"]["pid"], pids["app"]["pid"]]
    stop = subprocess.run(
        [sys.executable, "-m", "llm_studio.ui.launch", "stop"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert _wait_gone(servers), "waved or the app outlived their launcher and stop-llmstudio"
    assert not (tmp_path / "data" / "llmstudio.pids").exists()
