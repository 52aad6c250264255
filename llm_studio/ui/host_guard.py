"""A front proxy that refuses requests whose `Host` is not ours: the defence against DNS rebinding.

After rebinding, a page of `evil.example` talks to our port with `Host: evil.example:<port>` and
a matching `Origin`; waved only compares the two, so it accepts. waved has no host check of its
own, so this proxy listens on the public address, reads each connection's first request head,
and splices the connection to waved (on a private loopback port) only when the host is a
loopback name or one the user listed in LLM_STUDIO_ALLOWED_HOSTS.

Checking the first request of a connection is enough: a browser sends requests for one origin
only on a connection (HTTP/1.1 has no coalescing), and non-browser clients can send any Host
anyway, so the check is only ever a defence of browsers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket

ALLOWED_HOSTS_ENV = "LLM_STUDIO_ALLOWED_HOSTS"
LOOPBACK_NAMES = frozenset({"localhost"})
MAX_HEAD = 64 * 1024  # bytes of request head before we give up on a connection


def allowed_hosts(environ: dict[str, str] | None = None) -> frozenset[str]:
    """The extra host names (lower case, no port) from LLM_STUDIO_ALLOWED_HOSTS; "*" allows any."""
    raw = (environ if environ is not None else os.environ).get(ALLOWED_HOSTS_ENV, "")
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


def _host_header(head: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == b"host":
            return value.decode("latin-1").strip()
    return None


def _refusal(host: str | None) -> bytes:
    shown = host if host else "(none)"
    body = (
        f"Host {shown} is not allowed. LLM Studio answers only to loopback names "
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
        try:
            writer.close()
        except Exception:  # already gone
            pass


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
    host = _host_header(head)
    if not is_allowed(host, extra):
        writer.write(_refusal(host))
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
