"""The daemon's port while the daemon itself is still loading: bound at the process's first
moment, every request answered 503 with Retry-After, /healthz with its usual report saying
`starting`. Plain asyncio and no framework (aiohttp alone takes a noticeable part of a second
to import); the daemon's own server takes the listening sockets over (`hand_over`), so the
port never closes in between and a connection made meanwhile waits in its backlog."""
from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse

from basewatch.config_listen import split_listen
from basewatch.health import HostState, health_report
from basewatch.registration_progress import RegistrationProgress

# Seconds a client is told to wait while the daemon starts (and registers its config's tasks).
STARTING_RETRY_AFTER = "1"
# As aiohttp's TCPSite listens, so the sockets handed over are those it would have made.
BACKLOG = 128
NOT_CHECKED = "not checked yet: the daemon is starting"
STARTING = ("the daemon is starting: it has not loaded yet, and its config's tasks are not "
            "registered yet; send it again in a moment")
# A client that sends no whole request within this long is let go.
REQUEST_SECONDS = 10.0
_CHUNK = 64 * 1024


def starting_report() -> dict:
    """/healthz before the daemon's parts exist: the report's usual shape, nothing checked
    yet, the config's tasks not read yet."""
    return health_report(HostState(NOT_CHECKED, NOT_CHECKED), [], 0, (),
                         registration=RegistrationProgress().view(), starting=True)


class StartingServer:
    def __init__(self, listen: str):
        self.listen = listen  # host:port, as the config file wrote it
        self._server: asyncio.Server | None = None

    @classmethod
    async def open(cls, listen: str) -> "StartingServer":
        """Listening on `listen` (host:port); OSError when it cannot."""
        host, port = split_listen(listen)
        starting = cls(listen)
        # Bound as aiohttp's TCPSite binds (the same loop.create_server): every address the
        # host name has, the same socket options.
        starting._server = await asyncio.start_server(starting._answer, host, port,
                                                      backlog=BACKLOG)
        return starting

    def hand_over(self) -> list[socket.socket]:
        """Stop answering; the listening sockets, still listening, for the server that
        answers from now on."""
        sockets = [sock.dup() for sock in self._server.sockets]
        self.close()
        return sockets

    def close(self) -> None:
        self._server.close()  # requests being answered are answered all the same

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(self._respond(reader, writer), REQUEST_SECONDS)
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError, TimeoutError):
            pass  # a client gone, too slow, or not speaking HTTP: nothing to answer
        finally:
            writer.close()

    @staticmethod
    async def _respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *fields = head.split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (field.partition(":") for field in fields if field)}
        # The body read before the answer: a socket closed on bytes it never read is reset,
        # and the client would see the reset instead of the 503.
        remaining = int(headers.get("content-length") or 0)
        while remaining > 0:
            remaining -= len(await reader.readexactly(min(remaining, _CHUNK)))
        path = urllib.parse.urlsplit(target).path
        body = starting_report() if path == "/healthz" else {"error": STARTING}
        payload = json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 503 Service Unavailable\r\n"
            f"Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\nRetry-After: {STARTING_RETRY_AFTER}\r\n"
            f"Connection: close\r\n\r\n".encode() + (b"" if method == "HEAD" else payload))
        await writer.drain()
