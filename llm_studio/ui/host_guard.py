"""A front proxy that refuses requests whose `Host` or `Origin` is not ours (DNS rebinding, CSRF).

After rebinding, a page of `evil.example` talks to our port with `Host: evil.example:<port>` and
a matching `Origin`; waved only compares the two, so it accepts. waved has no host check of its
own, so this proxy listens on the public address, reads the request head, and splices the
connection to waved (on a private loopback port) only when the host, and the `Origin` if the
browser sent one, is a loopback name or one the user listed in H2O_LLM_STUDIO_ALLOWED_HOSTS. The
`Origin` check also refuses cross-site form posts (e.g. uploads) from any other page.

Every plain HTTP request is passed on with `Connection: close`, so a connection carries exactly
one request and every request is checked; a WebSocket upgrade is checked once and then spliced.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from urllib.parse import urlsplit

from llm_studio.env import setting_env

ALLOWED_HOSTS_ENV = "H2O_LLM_STUDIO_ALLOWED_HOSTS"
LOOPBACK_NAMES = frozenset({"localhost"})
MAX_HEAD = 64 * 1024  # bytes of request head before we give up on a connection


def allowed_hosts(environ: dict[str, str] | None = None) -> frozenset[str]:
    """The extra host names (lower case, no port) from H2O_LLM_STUDIO_ALLOWED_HOSTS; "*" allows any."""
    raw = setting_env(ALLOWED_HOSTS_ENV, environ) or ""
    return frozenset(h.strip().lower() for h in raw.split(",") if h.strip())


def host_name(host_header: str) -> str:
    """`Host` without its port: "Example.com:80" -> "example.com", "[::1]:8080" -> "::1"."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_allowed(host_header: str | None, extra: frozenset[str]) -> bool:
    if not host_header:
        return False
    name = host_name(host_header)
    if "*" in extra or name in extra or name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _headers(head: bytes) -> dict[str, str]:
    """Lower-case names to values (the first of repeated ones) of a request head."""
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep:
            headers.setdefault(
                key.strip().lower().decode("latin-1"), value.decode("latin-1").strip()
            )
    return headers


def origin_allowed(origin: str | None, extra: frozenset[str]) -> bool:
    """No Origin (not a browser, or a same-origin GET) passes; "null" or a foreign one does not."""
    if origin is None:
        return True
    name = urlsplit(origin).hostname
    if not name:
        return False
    return is_allowed(f"[{name}]" if ":" in name else name, extra)


def _one_request_per_connection(head: bytes) -> bytes:
    """The head with `Connection: close` instead of its own, so the next request is checked too."""
    lines = head[:-4].split(b"\r\n")
    kept = [lines[0]] + [
        line for line in lines[1:] if line.partition(b":")[0].strip().lower() != b"connection"
    ]
    return b"\r\n".join(kept + [b"Connection: close"]) + b"\r\n\r\n"


def _refusal(what: str, value: str | None) -> bytes:
    shown = value if value else "(none)"
    body = (
        f"{what} {shown} is not allowed. LLM Studio answers only to loopback names "
        f"(localhost, 127.0.0.1, ::1); to reach it under another name, list that name in "
        f"{ALLOWED_HOSTS_ENV} (comma-separated) before starting it.\n"
    ).encode()
    return (
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):  # already gone
            writer.close()


async def _handle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream: tuple[str, int],
    extra: frozenset[str],
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        writer.close()
        return
    headers = _headers(head)
    host, origin = headers.get("host"), headers.get("origin")
    refused = None
    if not is_allowed(host, extra):
        refused = _refusal("Host", host)
    elif not origin_allowed(origin, extra):
        refused = _refusal("Origin", origin)
    if refused:
        writer.write(refused)
        try:
            await writer.drain()
        finally:
            writer.close()
        return
    try:
        up_reader, up_writer = await asyncio.open_connection(*upstream)
    except OSError:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        writer.close()
        return
    if headers.get("upgrade", "").lower() != "websocket":
        head = _one_request_per_connection(head)
    up_writer.write(head)
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def serve(
    listening: socket.socket,
    upstream: tuple[str, int],
    extra: frozenset[str],
    stopped: asyncio.Event,
) -> None:
    """Accept on the already bound `listening` socket until `stopped` is set."""
    connections: set[asyncio.Task] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # the server runs handle() as a task
        connections.add(task)
        try:
            await _handle(reader, writer, upstream, extra)
        except asyncio.CancelledError:  # we are stopping: close quietly
            writer.close()
        finally:
            connections.discard(task)

    server = await asyncio.start_server(handle, sock=listening, limit=MAX_HEAD)
    async with server:
        await stopped.wait()
        for task in list(connections):  # open websockets end with us
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
