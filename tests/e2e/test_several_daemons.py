"""Two daemons on one database and a real registry: the registry's push notification, delivered
to both, re-checks and queues once; a change both see at the same moment queues one run.

The daemons run in this process with no engine behind them (their runs end in error); what is
checked is how many runs they queue. The notification is the registry's own, captured on its
way and then posted to both daemons at once, as a registry with an endpoint per daemon (or a
load balancer retrying on the other) would."""
from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest
import stack
from aiohttp import web

from basewatch.config import Config, NotificationSettings, RegistrySettings, TaskSettings
from basewatch.daemon import Daemon
from basewatch.models import Trigger
from tests.support import stores
from tests.support.oci import ImagePusher
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

TOKEN = "several-daemons-token"


class Capture:
    """Where the registry sends its notifications: kept, answered 200, handed on by the test."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append((request.headers.get("Content-Type", ""), await request.read()))
        return web.Response()

    def pushed(self, repository: str, tag: str, digest: str) -> tuple[str, bytes] | None:
        for content_type, body in self.bodies:
            for event in json.loads(body).get("events", []):
                target = event.get("target", {})
                if (event.get("action"), target.get("repository"), target.get("tag"),
                        target.get("digest")) == ("push", repository, tag, digest):
                    return content_type, body
        return None


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int):
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def test_a_notification_sent_to_two_daemons_queues_once(tmp_path, start_registry,
                                                              monkeypatch):
    monkeypatch.setenv("BASEWATCH_NOTIFY_TOKEN", TOKEN)
    capture, capture_port = Capture(), stack.free_port()
    app = web.Application()
    app.router.add_post("/capture", capture.handle)
    registry = start_registry(notify_url=f"http://127.0.0.1:{capture_port}/capture")
    reg = registry.address

    async def shared_store(daemon):  # both daemons' stores on one database
        return await stores.open_store(tmp_path / "shared.db")

    monkeypatch.setattr(Daemon, "_open_store", shared_store)
    context = tmp_path / "app"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {reg}/base:1\n")
    async with aiohttp.ClientSession() as session, serving(app, capture_port):
        pusher = ImagePusher(session, reg)
        await pusher.push_image("base", "1", content="v1")
        daemons, ports = [], []
        try:
            for n in range(2):
                ports.append(stack.free_port())
                daemon = Daemon(Config(
                    state_dir=tmp_path / f"state{n}", listen=f"127.0.0.1:{ports[n]}",
                    poll_interval=3600, registries=[RegistrySettings(host=reg)],
                    notifications=NotificationSettings(token_env="BASEWATCH_NOTIFY_TOKEN"),
                    tasks=[TaskSettings(name="app", context=context,
                                        image=[f"{reg}/app:latest"])]),
                    docker_host=f"unix://{tmp_path}/no-engine.sock")
                await daemon.start()
                daemons.append(daemon)
            store = daemons[0].store

            async def image_runs(digest: str):
                return [run for run in await store.runs.list(task="app", top=100)
                        if run.trigger is Trigger.IMAGE_UPDATE and run.retry_of is None
                        and run.base_change.digest == digest]

            v2 = (await pusher.push_image("base", "1", content="v2")).digest

            async def notified():
                return capture.pushed("base", "1", v2)

            content_type, body = await wait_for(notified, 30, "the registry's notification")
            answers = []

            async def deliver(port: int) -> None:
                async with session.post(f"http://127.0.0.1:{port}/webhooks/registry", data=body,
                                        headers={"Content-Type": content_type,
                                                 "Authorization": f"Bearer {TOKEN}"}) as response:
                    answers.append((response.status, await response.json()))

            await asyncio.gather(*(deliver(port) for port in ports))
            assert sorted((status, answer["accepted"] > 0, answer["duplicates"] > 0)
                          for status, answer in answers) == [(202, False, True),
                                                             (202, True, False)], answers
            await wait_for(lambda: image_runs(v2), 30, "the run the notification queued")

            # Both daemons see the next push at the same moment (each was told of it).
            async def nothing_queued():
                return await store.runs.count_queued() == 0
            await wait_for(nothing_queued, 60, "the first run to end")
            v3 = (await pusher.push_image("base", "1", content="v3")).digest
            await asyncio.gather(*(d.watcher.check_references(lambda base: True)
                                   for d in daemons))
            assert len(await image_runs(v3)) == 1
            await asyncio.sleep(1.0)  # a second one would be queued by now
            assert len(await image_runs(v2)) == 1 and len(await image_runs(v3)) == 1
            assert (await store.graph.get_watched(f"{reg}/base:1", "linux/amd64")).digest == v3
        finally:
            for daemon in daemons:
                await daemon.stop()
