"""Start and stop the GUI: a host-checking front proxy, the `waved` server, and our app.

`start` runs in the foreground and supervises:
- the public address (H2O_WAVE_LISTEN, else --host/--port) is served by `host_guard`, which
  refuses foreign `Host` headers (DNS rebinding) and splices the rest to waved on a private
  loopback port;
- waved keeps the app registered when it is slow (H2O_WAVE_KEEP_APP_LIVE), and should waved drop
  it anyway (it logs `app_drop`), the launcher registers it again: a stall never ends the GUI;
- waved keeps uploads and downloads in `<workdir>/data/wave-files`, emptied on every start.

The launcher, waved and the app (PIDs with start times) go to `<workdir>/data/llmstudio.pids`.
`stop` ends the launcher (which stops both servers and exits 0), then anything it left behind.
A second `start` for the same work dir says where the running one is and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from llm_studio.atomic import write_json_atomic
from llm_studio.env import setting_env
from llm_studio.paths import REPO_ROOT, workdir
from llm_studio.ui import host_guard

PID_FILE = "llmstudio.pids"
WAVE_FILES = "wave-files"


def pid_file() -> Path:
    return workdir() / "data" / PID_FILE


def wave_files_dir() -> Path:
    """waved's data directory: every upload and every download the app hands out lies here."""
    return workdir() / "data" / WAVE_FILES


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def public_address(host: str, port: int, environ: dict[str, str] | None = None) -> tuple[str, int]:
    """Where browsers connect: H2O_WAVE_LISTEN (e.g. "0.0.0.0:10101" in Docker), else host:port."""
    listen = (environ if environ is not None else os.environ).get("H2O_WAVE_LISTEN", "")
    if listen:
        name, _, listen_port = listen.rpartition(":")
        return name.strip("[]") or "0.0.0.0", int(listen_port)
    return host, port


def wave_environment(waved_port: int, app_port: int) -> dict[str, str]:
    """Environment of waved and the app. H2O_WAVE_* values the user set win, except the addresses
    (waved listens privately behind the host guard) and the keys (fresh ones each start, so no
    other local program can register itself in our app's place)."""
    env = dict(os.environ)
    env.setdefault("H2O_WAVE_MAX_REQUEST_SIZE", "25MB")
    env.setdefault("H2O_WAVE_NO_LOG", "true")
    env.setdefault("H2O_WAVE_KEEP_APP_LIVE", "true")
    env.setdefault("H2O_WAVE_PRIVATE_DIR", f"/download/@{workdir() / 'output' / 'download'}")
    env["H2O_WAVE_LISTEN"] = f"127.0.0.1:{waved_port}"
    env["H2O_WAVE_ADDRESS"] = f"http://127.0.0.1:{waved_port}"
    env["H2O_WAVE_APP_ADDRESS"] = f"http://127.0.0.1:{app_port}"
    env["H2O_WAVE_DATA_DIR"] = str(wave_files_dir())
    for name in (
        "ACCESS_KEY_ID",
        "ACCESS_KEY_SECRET",
        "APP_ACCESS_KEY_ID",
        "APP_ACCESS_KEY_SECRET",
    ):
        env[f"H2O_WAVE_{name}"] = secrets.token_urlsafe(16)
    env["H2O_LLM_STUDIO_WORKDIR"] = str(workdir())
    return env


def _start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def _alive(entry: dict | None) -> bool:
    """Whether the process of a PID-file entry still runs (and is not a reused PID)."""
    if not entry or not entry.get("pid"):
        return False
    import psutil

    try:
        process = psutil.Process(entry["pid"])
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = entry.get("start_time")
        return started is None or abs(process.create_time() - started) < 0.01
    except psutil.NoSuchProcess:
        return False


def read_pids() -> dict:
    try:
        return json.loads(pid_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_pids(pids: dict) -> None:
    write_json_atomic(pid_file(), pids, indent=None)


def _die_with_parent() -> None:
    """Children get SIGTERM should the launcher itself be killed (SIGKILL leaves no cleanup)."""
    with contextlib.suppress(Exception):  # not Linux: `stop` still ends them by PID
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")  # type: ignore[index, str-bytes-safe]  # started with a list of str
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the app did not listen on 127.0.0.1:{port} after {timeout:.0f} s")


def register_app(env: dict[str, str]) -> None:
    """Register the app at "/" with waved, exactly as the app does itself at start-up."""
    request = {
        "register_app": {
            "mode": "unicast",
            "route": "/",
            "address": env["H2O_WAVE_APP_ADDRESS"],
            "key_id": env["H2O_WAVE_APP_ACCESS_KEY_ID"],
            "key_secret": env["H2O_WAVE_APP_ACCESS_KEY_SECRET"],
        }
    }
    auth = f"{env['H2O_WAVE_ACCESS_KEY_ID']}:{env['H2O_WAVE_ACCESS_KEY_SECRET']}"
    import base64

    post = urllib.request.Request(
        env["H2O_WAVE_ADDRESS"],
        data=json.dumps(request).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(auth.encode()).decode(),
        },
    )
    with urllib.request.urlopen(post, timeout=10):
        pass


class _WavedWatch(threading.Thread):
    """Forwards waved's log to our stdout and notices when waved drops the app."""

    def __init__(self, process: subprocess.Popen):
        super().__init__(daemon=True)
        self.process = process
        self.dropped = threading.Event()

    def run(self) -> None:
        assert self.process.stdout is not None  # started with stdout=PIPE
        for raw in self.process.stdout:  # read to the end, or waved would block on a full pipe
            line = raw.decode(errors="replace")
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except (OSError, ValueError):  # our terminal is gone; keep draining
                pass
            if '"t":"app_drop"' in line.replace(" ", "") and '"route":"/"' in line:
                self.dropped.set()


def _say(message: str) -> None:
    """Print to the terminal; a closed one must not end the launcher (and with it the GUI)."""
    with contextlib.suppress(OSError, ValueError):
        print(message, flush=True)


class AlreadyRunning(RuntimeError):
    pass


def running_instance() -> dict | None:
    """The PID file of a launcher that still runs for this work dir, else None."""
    pids = read_pids()
    return pids if _alive(pids.get("launcher")) else None


class Launcher:
    def __init__(self, host: str, port: int):
        self.host, self.port = public_address(host, port)
        self.processes: dict[str, subprocess.Popen] = {}
        self.stop_requested = threading.Event()
        self.stop_reason = ""

    @property
    def url(self) -> str:
        shown = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "", "::") else self.host
        return f"http://{shown}:{self.port}/"

    def start(self) -> None:
        (workdir() / "data").mkdir(parents=True, exist_ok=True)
        (workdir() / "output" / "download").mkdir(parents=True, exist_ok=True)
        listening = self._bind_public()  # first: a taken port must change nothing
        _stop_leftovers()  # servers of a launcher that was killed outright
        # Ours from now on: a second start meanwhile says where this one is.
        _write_pids({"launcher": _entry(os.getpid()), "url": self.url})
        shutil.rmtree(wave_files_dir(), ignore_errors=True)
        wave_files_dir().mkdir(parents=True)
        waved_port, app_port = free_port(), free_port()
        self.env = env = wave_environment(waved_port, app_port)
        waved = subprocess.Popen(
            [str(Path(sys.exec_prefix) / "waved")],
            cwd=sys.exec_prefix,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches the launcher, which stops both in order
            preexec_fn=_die_with_parent,
        )
        self.processes["waved"] = waved
        self.watch = _WavedWatch(waved)
        self.watch.start()
        wait_until_up(f"{env['H2O_WAVE_ADDRESS']}/", waved)
        self.processes["app"] = subprocess.Popen(
            [str(Path(sys.executable).with_name("wave")), "run", "--no-reload", "--no-autostart"]
            + ["app"],
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        # Browsers are let in only once the app listens: before that waved would drop it.
        wait_for_port(app_port, self.processes["app"])
        self._serve_public(listening, ("127.0.0.1", waved_port))
        pids: dict[str, Any] = {name: _entry(p.pid) for name, p in self.processes.items()}
        pids["launcher"] = _entry(os.getpid())
        pids["url"] = self.url
        _write_pids(pids)

    def _bind_public(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listening.bind((self.host, self.port))
        except OSError as err:
            listening.close()
            raise AlreadyRunning(
                f"cannot listen on {self.host}:{self.port} ({err.strerror}); another program "
                "(or an LLM Studio with another H2O_LLM_STUDIO_WORKDIR) uses it. "
                "Pick another port with H2O_WAVE_LISTEN or --port."
            ) from err
        listening.listen(128)
        listening.setblocking(False)
        return listening

    def _serve_public(self, listening: socket.socket, upstream: tuple[str, int]) -> None:
        loop = asyncio.new_event_loop()
        self._guard_loop = loop
        self._guard_stopped = asyncio.Event()
        extra = host_guard.allowed_hosts()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(
                host_guard.serve(listening, upstream, extra, self._guard_stopped)
            )

        self._guard_thread = threading.Thread(target=run, daemon=True)
        self._guard_thread.start()

    def supervise(self) -> int:
        """Until a stop is asked (exit 0) or a server dies (exit 1): keep the app registered."""
        while not self.stop_requested.wait(0.5):
            dead = [name for name, p in self.processes.items() if p.poll() is not None]
            if dead:
                _say(f"LLM Studio: {dead[0]} exited; stopping the rest")
                self.shutdown()
                return 1
            if self.watch.dropped.is_set():
                self.watch.dropped.clear()
                try:
                    register_app(self.env)
                    _say("LLM Studio: waved had dropped the app; registered it again")
                except OSError as err:
                    _say(f"LLM Studio: could not register the app again ({err})")
                    self.watch.dropped.set()  # try again on the next round
        self.shutdown()
        _say(f"LLM Studio stopped ({self.stop_reason}).")
        return 0

    def shutdown(self) -> None:
        if getattr(self, "_guard_thread", None):
            self._guard_loop.call_soon_threadsafe(self._guard_stopped.set)
            self._guard_thread.join(timeout=5)
        for name in ("app", "waved"):
            if name in self.processes:
                _end_group(self.processes[name].pid, self.processes[name])
        if read_pids().get("launcher", {}).get("pid") == os.getpid():
            pid_file().unlink(missing_ok=True)


def _entry(pid: int) -> dict:
    return {"pid": pid, "start_time": _start_time(pid)}


def _end_group(pid: int, process: subprocess.Popen | None = None, grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds: it always ends."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.time() + wait
        while time.time() < deadline:
            if process is not None:
                if process.poll() is not None:
                    return
            elif not _alive({"pid": pid}):
                return
            time.sleep(0.1)


def _stop_leftovers() -> list[int]:
    """End waved and the app of a PID file whose launcher is gone."""
    pids, ended = read_pids(), []
    for name in ("app", "waved"):
        if _alive(pids.get(name)):
            _end_group(pids[name]["pid"])
            ended.append(pids[name]["pid"])
    if pids and not _alive(pids.get("launcher")):
        pid_file().unlink(missing_ok=True)
    return ended


def stop(timeout: float = 60.0) -> str:
    """End the running launcher (it stops both servers), then whatever it left behind."""
    pids = read_pids()
    if not pids:
        return "LLM Studio is not running (no PID file)."
    launcher = pids.get("launcher")
    if launcher and _alive(launcher):
        os.kill(launcher["pid"], signal.SIGTERM)
        deadline = time.time() + timeout
        while _alive(launcher) and time.time() < deadline:
            time.sleep(0.2)
        if _alive(launcher):
            os.kill(launcher["pid"], signal.SIGKILL)
    ended = _stop_leftovers()
    pid_file().unlink(missing_ok=True)
    extra = f" (ended leftover processes {ended})" if ended else ""
    return f"LLM Studio at {pids.get('url', '?')} stopped{extra}."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start or stop the LLM Studio GUI.")
    parser.add_argument("command", choices=("start", "stop"))
    parser.add_argument("--host", default=setting_env("H2O_LLM_STUDIO_HOST") or "127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(setting_env("H2O_LLM_STUDIO_PORT") or 10101)
    )
    args = parser.parse_args(argv)
    if args.command == "stop":
        print(stop(), flush=True)
        return 0
    running = running_instance()
    if running:
        print(
            f"LLM Studio is already running at {running.get('url')} (launcher PID "
            f"{running['launcher']['pid']}); stop it with `make stop-llmstudio`.",
            flush=True,
        )
        return 1
    launcher = Launcher(args.host, args.port)

    def request_stop(signum, _frame) -> None:
        launcher.stop_reason = {
            signal.SIGINT: "Ctrl-C",
            signal.SIGHUP: "the terminal was closed",
        }.get(signum, "SIGTERM, e.g. from make stop-llmstudio")
        launcher.stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)
    try:
        launcher.start()
    except AlreadyRunning as err:
        _say(f"LLM Studio did not start: {err}")
        return 1
    except (RuntimeError, TimeoutError, OSError) as err:
        _say(f"LLM Studio did not start: {err}")
        launcher.shutdown()
        return 1
    _say(f"LLM Studio is at {launcher.url} (stop with Ctrl-C or make stop-llmstudio)")
    return launcher.supervise()


if __name__ == "__main__":
    sys.exit(main())
