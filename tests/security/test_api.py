"""The HTTP edge under hostile use (issue 8): a /healthz flood does not starve the API, and odd
inputs get a clear 4xx, never a 500 with a traceback."""
from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from basewatch.builder.backends.docker.docker_engine import DockerEngine
from basewatch.models import RunStatus, RunType, Trigger
from basewatch.models import RunRequest
from tests.e2e.test_daemon import health, start_daemon, stop
from tests.support.inprocess_daemon import TOKEN, running_daemon

AUTH = {"Authorization": f"Bearer {TOKEN}"}


class CountedPings:
    """Stands in for the engine's ping: counts the calls, each taking `seconds`."""

    def __init__(self, monkeypatch, seconds: float):
        self.times: list[float] = []
        self._lock = threading.Lock()
        counted = self

        def ping(engine) -> None:
            with counted._lock:
                counted.times.append(time.monotonic())
            time.sleep(seconds)

        monkeypatch.setattr(DockerEngine, "ping", ping)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.times)


async def flood(session: aiohttp.ClientSession, url: str, count: int) -> list[int]:
    async def one() -> int:
        async with session.get(f"{url}/healthz") as response:
            await response.read()
            return response.status

    return await asyncio.gather(*(one() for _ in range(count)))


async def test_a_healthz_flood_pings_the_engine_at_most_once_a_second(tmp_path, monkeypatch):
    pings = CountedPings(monkeypatch, 0.01)
    async with running_daemon(tmp_path, monkeypatch) as daemon:
        before = pings.count
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            statuses = await flood(session, daemon.url, 400)
        elapsed = time.monotonic() - started
        assert set(statuses) == {200}
        assert pings.count - before <= elapsed + 2, (pings.count - before, elapsed)


async def test_an_api_call_during_a_healthz_flood_is_not_queued_behind_it(tmp_path, monkeypatch):
    pings = CountedPings(monkeypatch, 0.2)  # an engine that is slow to answer
    async with running_daemon(tmp_path, monkeypatch) as daemon:
        run = await daemon.store.runs.create(RunRequest(
            "", Trigger.MANUAL, RunType.QUICK_BUILD, "linux/amd64", "quick build"))
        await daemon.store.runs.finish(run.id, RunStatus.FAILED, [], "failed")
        logs = tmp_path / "state" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{run.id}.log").write_text("the log\n")
        async with aiohttp.ClientSession() as flooding, aiohttp.ClientSession() as api:
            storm = asyncio.ensure_future(flood(flooding, daemon.url, 600))
            await asyncio.sleep(0)  # the flood's requests go out first
            before = pings.count
            async with api.get(f"{daemon.url}/api/runs/{run.id}/log", headers=AUTH,
                               timeout=aiohttp.ClientTimeout(total=60)) as response:
                assert (response.status, await response.text()) == (200, "the log\n")
            pings_meanwhile = pings.count - before
            statuses = await storm
        assert set(statuses) == {200}
        # The log read waited for no more than the ping already under way, not for hundreds.
        assert pings_meanwhile <= 2, pings_meanwhile


async def test_a_nul_anywhere_in_a_request_is_refused(tmp_path, monkeypatch):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    async with running_daemon(tmp_path, monkeypatch) as daemon, aiohttp.ClientSession() as http:
        task = {"name": "app", "context": str(tmp_path / "app"), "image": "127.0.0.1:9/app:1"}
        for body, where in (({**task, "file": "Docker\0file"}, "file"),
                            ({**task, "build_args": {"A": "x\0"}}, "build_args.A")):
            async with http.post(f"{daemon.url}/api/tasks", headers=AUTH, json=body) as answer:
                assert answer.status == 400, await answer.text()
                assert (await answer.json())["error"] == \
                    f"{where}: a NUL character is not allowed"
        assert await daemon.store.tasks.all() == []


async def test_huge_numbers_get_a_clear_400(tmp_path, monkeypatch):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    async with running_daemon(tmp_path, monkeypatch) as daemon, aiohttp.ClientSession() as http:
        for huge in ("9" * 40 + "d", "9" * 400 + "d", 10 ** 400):
            task = {"name": "app", "context": str(tmp_path / "app"),
                    "image": "127.0.0.1:9/app:1", "timeout": huge}
            async with http.post(f"{daemon.url}/api/tasks", headers=AUTH, json=task) as answer:
                assert answer.status == 400, await answer.text()
                assert "task: timeout: a duration must be at most 36500d" in \
                    (await answer.json())["error"]
        build = {"image": ["127.0.0.1:9/x:1"], "context_url": "http://127.0.0.1:9/c.tar.gz",
                 "timeout": 1e300}
        async with http.post(f"{daemon.url}/api/builds", headers=AUTH, json=build) as answer:
            assert answer.status == 400, await answer.text()
            assert "build: timeout: a duration must be at most 36500d" in \
                (await answer.json())["error"]
        for top in ("1e23", "1" + "0" * 23, "-5", "x"):
            async with http.get(f"{daemon.url}/api/runs", headers=AUTH,
                                params={"top": top}) as answer:
                assert answer.status == 400, (top, await answer.text())
                assert (await answer.json())["error"] == \
                    "top must be a whole number from 1 to 10000", top
        assert await daemon.store.tasks.all() == [] and await daemon.store.runs.list() == []


async def raw_request(url: str, head: bytes) -> tuple[int, bytes]:
    """Send a request head as raw bytes (aiohttp would refuse to send these headers)."""
    host, _, port = url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest


@pytest.mark.parametrize("request_line", [b"GET /api/runs", b"POST /webhooks/registry",
                                          b"POST /webhooks/registry?token=%ff%fe"])
@pytest.mark.parametrize("value", [b"Bearer \xff\xfe\x80", b"\xc3\x28 \xa0\xa1",
                                   b"Bearer " + TOKEN.encode() + b"\xff"])
async def test_a_non_utf8_authorization_header_gets_401(tmp_path, monkeypatch, request_line,
                                                       value):
    monkeypatch.setenv("BASEWATCH_TEST_NOTIFY", TOKEN)
    async with running_daemon(tmp_path, monkeypatch,
                              notifications={"token_env": "BASEWATCH_TEST_NOTIFY"}) as daemon:
        status, rest = await raw_request(
            daemon.url, request_line + b" HTTP/1.1\r\nHost: x\r\nAuthorization: " + value
            + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert status == 401, rest
    assert b"Traceback" not in rest


async def test_manual_runs_beyond_max_queued_runs_get_429(tmp_path, monkeypatch):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    task = {"name": "app", "context": str(tmp_path / "app"), "image": "127.0.0.1:9/app:1"}
    async with running_daemon(tmp_path, monkeypatch, max_queued_runs=2, tasks=[task],
                              allowed_context_hosts=["127.0.0.1"]) as daemon, aiohttp.ClientSession() as http:
        await daemon.queue.stop()  # nothing runs: what is queued stays queued
        build = {"image": ["127.0.0.1:9/x:1"], "context_url": "http://127.0.0.1:9/c.tar.gz"}
        async with http.post(f"{daemon.url}/api/builds", headers=AUTH, json=build) as answer:
            assert answer.status == 202
        async with http.post(f"{daemon.url}/api/tasks/app/runs", headers=AUTH) as answer:
            assert answer.status == 202
        refused = "2 runs are queued already, the daemon's max_queued_runs: wait for some to " \
                  "finish or cancel some"
        async with http.post(f"{daemon.url}/api/tasks/app/runs", headers=AUTH) as answer:
            assert (answer.status, (await answer.json())["error"]) == (429, refused)
        async with http.post(f"{daemon.url}/api/builds", headers=AUTH, json=build) as answer:
            assert (answer.status, (await answer.json())["error"]) == (429, refused)
        upload = {**AUTH, "Content-Type": "application/gzip",
                  "X-Basewatch-Build": json.dumps({"image": ["127.0.0.1:9/x:1"]})}
        async with http.post(f"{daemon.url}/api/builds", data=b"x" * 1000,
                             headers=upload) as answer:  # refused before the upload is read
            assert (answer.status, (await answer.json())["error"]) == (429, refused)
        assert len(await daemon.store.runs.queued()) == 2
        assert not list((tmp_path / "state" / "contexts").glob("upload-*"))


@pytest.mark.sqlite_only
async def test_a_request_while_the_database_is_locked_gets_503(tmp_path, monkeypatch):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    task = {"name": "app", "context": str(tmp_path / "app"), "image": "127.0.0.1:9/app:1"}
    async with running_daemon(tmp_path, monkeypatch, tasks=[task]) as daemon, \
            aiohttp.ClientSession() as http:
        lock = sqlite3.connect(tmp_path / "state" / "basewatch.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # held past the daemon's busy_timeout
        try:
            async with http.post(f"{daemon.url}/api/tasks/app/runs", headers=AUTH) as answer:
                assert answer.status == 503, await answer.text()
                assert answer.headers["Retry-After"]
                assert (await answer.json())["error"] == \
                    "the daemon's database is busy (database is locked): try again shortly"
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert await daemon.store.runs.list() == []


PING = re.compile(rb"^(?:GET|HEAD) /(?:v[0-9.]+/)?_ping[ ?]", re.MULTILINE)


class CountingEngineProxy:
    """A unix socket relaying to the real engine's, counting the pings that pass through."""

    def __init__(self, engine_socket: str, path: Path):
        self.engine_socket = engine_socket
        self.path = path
        self.pings = 0
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self):
        self._server = await asyncio.start_unix_server(self._relay, path=str(self.path))
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _relay(self, client_reader, client_writer) -> None:
        engine_reader, engine_writer = await asyncio.open_unix_connection(self.engine_socket)

        async def pipe(reader, writer, count: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if count:
                        self.pings += len(PING.findall(data))
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        await asyncio.gather(pipe(client_reader, engine_writer, True),
                             pipe(engine_reader, client_writer, False), return_exceptions=True)


async def test_a_healthz_flood_on_a_live_daemon_pings_the_engine_rarely(tmp_path, docker_host):
    if not docker_host.startswith("unix://"):
        pytest.skip("the counting proxy relays a unix socket")
    async with CountingEngineProxy(docker_host.removeprefix("unix://"),
                                   tmp_path / "engine.sock") as engine:
        process, url = start_daemon({"api_token_env": "API_TOKEN"}, tmp_path,
                                    f"unix://{engine.path}", env={"API_TOKEN": TOKEN})
        try:
            report = await asyncio.to_thread(health, url, process)
            assert report["engine"] == "ok", report
            before, started = engine.pings, time.monotonic()
            async with aiohttp.ClientSession() as flooding, aiohttp.ClientSession() as api:
                storm = asyncio.ensure_future(flood(flooding, url, 1500))
                await asyncio.sleep(0)
                async with api.get(f"{url}/api/runs", headers=AUTH,
                                   timeout=aiohttp.ClientTimeout(total=60)) as answer:
                    assert (answer.status, await answer.json()) == (200, [])
                assert set(await storm) == {200}
            elapsed = time.monotonic() - started
            assert engine.pings - before <= elapsed + 2, (engine.pings - before, elapsed)
        finally:
            await asyncio.to_thread(stop, process)
