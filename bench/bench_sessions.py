"""Benchmark: 20 concurrent browser-like sessions against a real launched LLM Studio.

Starts the GUI with the launcher (host guard + waved + app) on 127.0.0.1 in a temporary work
dir. A session speaks the Wave protocol over a raw websocket like a browser tab: it opens "/"
(the home page), then visits Datasets, Experiments and Settings, each time waiting for the
page's content. Compared in the same process: 1 session alone (baseline), then 20 at once.
Prints median and maximum latency per page, how many of the 20 sessions completed within the
time limit, and the ratio of the medians. It asserts nothing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = 20
PAGES = ("datasets", "experiments", "settings")
SESSION_LIMIT_S = 120.0  # a session slower than this counts as not completed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_content(ws) -> None:
    """Until a frame carries page content ("d"); an error frame ("e") fails the session."""
    while True:
        for line in ws.recv().splitlines():
            message = json.loads(line) if line.strip() else {}
            if "e" in message:
                raise RuntimeError(f"waved answered {message}")
            if "d" in message:
                return


def session(url: str, latencies: list[float], done: list[bool], index: int) -> None:
    import websocket

    deadline = time.monotonic() + SESSION_LIMIT_S
    ws = websocket.create_connection(url.replace("http", "ws", 1) + "_s/", timeout=SESSION_LIMIT_S)
    try:
        start = time.monotonic()
        ws.send("+ / ")
        wait_for_content(ws)
        latencies.append(time.monotonic() - start)
        for page in PAGES:
            start = time.monotonic()
            ws.send(f"@ / {json.dumps({'#': page})}")
            wait_for_content(ws)
            latencies.append(time.monotonic() - start)
        done[index] = time.monotonic() <= deadline
    except Exception as exc:  # counted as not completed
        print(f"session {index}: {exc}", file=sys.stderr)
    finally:
        ws.close()


def run(url: str, count: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    done = [False] * count
    threads = [
        threading.Thread(target=session, args=(url, latencies, done, i)) for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SESSION_LIMIT_S + 30)
    return latencies, sum(done)


def start_gui(workdir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "H2O_LLM_STUDIO_WORKDIR": str(workdir)}
    for name in ("H2O_WAVE_LISTEN", "H2O_WAVE_ADDRESS", "H2O_WAVE_APP_ADDRESS"):
        env.pop(name, None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "llm_studio.ui.launch", "start", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in launcher.stdout:
        if "LLM Studio is at" in line:
            break
    else:
        raise RuntimeError("the GUI did not start")
    threading.Thread(target=lambda: [None for _ in launcher.stdout], daemon=True).start()
    return launcher


def report(name: str, latencies: list[float], completed: int, count: int) -> float:
    median = statistics.median(latencies) if latencies else float("nan")
    worst = max(latencies) if latencies else float("nan")
    print(
        f"{name:>12}: median {median * 1000:7.1f} ms, max {worst * 1000:7.1f} ms per page, "
        f"completed {completed} of {count}"
    )
    return median


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        launcher = start_gui(Path(tmp), free_port())
        url = f"http://127.0.0.1:{launcher.args[-1]}/"
        try:
            run(url, 1)  # warm-up: first page renders, default datasets
            base = report("1 session", *run(url, 1), 1)
            many = report(f"{SESSIONS} sessions", *run(url, SESSIONS), SESSIONS)
            print(f"ratio (median {SESSIONS} sessions / median 1 session): {many / base:.1f}x")
        finally:
            launcher.send_signal(signal.SIGTERM)
            launcher.wait(timeout=60)


if __name__ == "__main__":
    main()
