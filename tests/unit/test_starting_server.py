"""The port while the daemon loads: every request answered 503 with Retry-After, /healthz with
the report's usual shape saying `starting`, and the listening sockets handed to the daemon's
own server without the port ever closing."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from basewatch.health import HostState, health_report
from basewatch.http.starting import StartingServer, starting_report
from basewatch.registration_progress import RegistrationProgress
from tests.support.inprocess_daemon import free_port


@pytest.fixture
async def starting():
    server = await StartingServer.open(f"127.0.0.1:{free_port()}")
    yield server
    server.close()


def url(server: StartingServer, path: str) -> str:
    return f"http://{server.listen}{path}"


async def test_healthz_says_starting_in_the_reports_usual_shape(starting):
    async with aiohttp.ClientSession() as session:
        async with session.get(url(starting, "/healthz")) as response:
            assert response.status == 503 and response.headers["Retry-After"] == "1"
            report = await response.json()
    assert report == starting_report()
    assert report["status"] == "starting"
    assert report["registration"] == {"state": "in_progress", "registered": 0, "total": 0,
                                      "failed": 0}
    running = health_report(HostState(None, None), [], 0, (),
                            registration=RegistrationProgress().view(), starting=True)
    assert list(report) == list(running)


async def test_every_other_request_is_asked_to_come_back(starting):
    async with aiohttp.ClientSession() as session:
        async with session.post(url(starting, "/webhooks/registry"),
                                data=b"x" * 300_000) as response:
            assert response.status == 503 and response.headers["Retry-After"] == "1"
            assert "not registered yet" in (await response.json())["error"]
        async with session.head(url(starting, "/api/tasks")) as response:
            assert response.status == 503 and await response.read() == b""


async def test_a_request_that_is_not_http_is_let_go(starting):
    host, _, port = starting.listen.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"nonsense\r\n\r\n")
    assert await reader.read() == b""
    writer.close()
    async with aiohttp.ClientSession() as session:  # and the next is answered
        async with session.get(url(starting, "/healthz")) as response:
            assert response.status == 503


async def test_a_connection_made_during_the_hand_over_is_answered_by_the_new_server():
    starting = await StartingServer.open(f"127.0.0.1:{free_port()}")
    sockets = starting.hand_over()
    host, _, port = starting.listen.rpartition(":")
    # Made while nobody answers: it waits in the backlog, not refused.
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.1 200") and json.loads(
            answer.partition(b"\r\n\r\n")[2]) == {"status": "ok"}
    finally:
        writer.close()
        await runner.cleanup()
