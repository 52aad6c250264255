"""Start and stop the GUI: the `waved` server bundled in h2o-wave, and our app served by it.

Both PIDs (with their start times) go to `<workdir>/data/llmstudio.pids`, so `make stop-llmstudio`
can stop exactly these two processes: SIGTERM to `wave run` would leave `waved` orphaned.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from llm_studio.paths import REPO_ROOT, workdir

PID_FILE = "llmstudio.pids"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wave_environment(host: str, port: int, app_port: int) -> dict[str, str]:
    """H2O_WAVE_* values the user set win; otherwise listen on 127.0.0.1 only."""
    env = dict(os.environ)
    env.setdefault("H2O_WAVE_LISTEN", f"{host}:{port}")
    env.setdefault("H2O_WAVE_ADDRESS", f"http://127.0.0.1:{port}")
    env.setdefault("H2O_WAVE_APP_ADDRESS", f"http://127.0.0.1:{app_port}")
    env.setdefault("H2O_WAVE_MAX_REQUEST_SIZE", "25MB")
    env.setdefault("H2O_WAVE_NO_LOG", "true")
    env.setdefault("H2O_WAVE_PRIVATE_DIR", f"/download/@{workdir() / 'output' / 'download'}")
    env["H2O_LLM_STUDIO_WORKDIR"] = str(workdir())
    return env


def _start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def wait_for_port(host: str, port: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def start(host: str = "127.0.0.1", port: int = 10101) -> tuple[dict, list[subprocess.Popen]]:
    """Start waved and the app; returns their PIDs (also written to the PID file) and handles."""
    app_port = free_port()
    env = wave_environment(host, port, app_port)
    (workdir() / "data").mkdir(parents=True, exist_ok=True)
    (workdir() / "output" / "download").mkdir(parents=True, exist_ok=True)
    waved = Path(sys.exec_prefix) / "waved"
    # New sessions: a Ctrl-C in the terminal reaches the launcher, which stops both in order.
    waved_proc = subprocess.Popen(
        [str(waved)], cwd=sys.exec_prefix, env=env, start_new_session=True
    )
    wait_until_up(f"http://127.0.0.1:{env['H2O_WAVE_LISTEN'].rsplit(':', 1)[-1]}/")
    wave_cli = Path(sys.executable).with_name("wave")
    app_proc = subprocess.Popen(
        [str(wave_cli), "run", "--no-reload", "--no-autostart", "app"],
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,
    )
    # Only once the app listens can a browser get pages; before that waved drops the app.
    app_address = env["H2O_WAVE_APP_ADDRESS"].rsplit(":", 1)
    wait_for_port(app_address[0].split("//")[-1], int(app_address[1]))
    pids = {
        "waved": {"pid": waved_proc.pid, "start_time": _start_time(waved_proc.pid)},
        "app": {"pid": app_proc.pid, "start_time": _start_time(app_proc.pid)},
        "url": f"http://{'localhost' if host == '127.0.0.1' else host}:{port}/",
    }
    (workdir() / "data" / PID_FILE).write_text(json.dumps(pids))
    return pids, [app_proc, waved_proc]


def stop() -> list[int]:
    """Stop the processes in the PID file (only if they are still the ones we started)."""
    path = workdir() / "data" / PID_FILE
    if not path.is_file():
        return []
    stopped = []
    pids = json.loads(path.read_text())
    for name in ("app", "waved"):
        entry = pids.get(name) or {}
        pid, started = entry.get("pid"), entry.get("start_time")
        if pid and (started is None or _start_time(pid) == started):
            try:
                os.killpg(pid, signal.SIGTERM)
                stopped.append(pid)
            except ProcessLookupError:
                pass
    path.unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start or stop the LLM Studio GUI.")
    parser.add_argument("command", choices=("start", "stop"))
    parser.add_argument("--host", default=os.environ.get("LLM_STUDIO_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("LLM_STUDIO_PORT", 10101)))
    args = parser.parse_args(argv)
    if args.command == "stop":
        print(f"stopped {stop() or 'nothing'}")
        return 0
    pids, processes = start(args.host, args.port)
    print(f"LLM Studio is at {pids['url']} (stop with Ctrl-C or make stop-llmstudio)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("a server process exited; stopping the other", flush=True)
        stop()
        return 1
    except KeyboardInterrupt:
        stop()
        for process in processes:
            process.wait(timeout=10)
        return 0


if __name__ == "__main__":
    sys.exit(main())
