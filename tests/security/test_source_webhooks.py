"""Hostile git server webhooks: an unauthenticated delivery queues nothing, whatever it claims;
a delivery authenticated with one repository's secret triggers only that repository's tasks;
signatures and tokens are compared in constant time; the body cap holds under a memory limit;
and the routes are open to git servers, which cannot send the API token."""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from collections.abc import Collection

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from basewatch.http.source_webhooks import add_source_webhooks
from basewatch.models import RunStatus
from basewatch.tasks import Task
from basewatch.triggers import Triggers
from basewatch.triggers.manual import task_run
from basewatch.triggers.source_events import SourceEvent, SourceOutcome
from basewatch.triggers.webhooks import signatures
from tests.security.test_api import raw_request
from tests.support.inprocess_daemon import running_daemon
from tests.support.stores import open_store
from tests.unit.triggers.webhooks.fixtures import body

SECRET = "x-repository-secret"
OTHER = "y-repository-secret"
ENVIRON = {"X_SECRET": SECRET, "Y_SECRET": OTHER}
TASKS = [Task("x", "https://github.com/Codertocat/Hello-World.git", ["reg/x:1"],
              webhook_secret_env="X_SECRET"),
         Task("y", "https://github.com/other/repo.git", ["reg/y:1"],
              webhook_secret_env="Y_SECRET")]


class StaticTasks:
    async def all(self) -> list[Task]:
        return TASKS


class QueueingSink:
    """Stands in for commit triggers: queues a real run, in the real store, for each eligible
    task (matching by URL is not this layer's job), so what a delivery can queue is counted
    where runs live."""

    def __init__(self, triggers: Triggers):
        self.triggers = triggers

    async def on_event(self, event: SourceEvent, tasks: Collection[str] | None = None
                       ) -> SourceOutcome:
        requests = [task_run(name, "linux/amd64", {}) for name in sorted(tasks or ())]
        return SourceOutcome(tuple(await self.triggers.enqueue(requests)))


@pytest.fixture
async def served(tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    app = web.Application()
    add_source_webhooks(app, StaticTasks(), sink=QueueingSink(Triggers(store.runs,
                                                                       lambda *_: None)),
                        environ=ENVIRON)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client, store
    await client.close()
    await store.close()


def hub_signature(data: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"u:{password}".encode()).decode()


PUSH = body("github-push.json")
GITLAB_PUSH = body("gitlab-push-hook.json")
AZURE_PUSH = body("azure-devops-git.push.json")
GITEA_PUSH = body("gitea-push.json")
UNAUTHENTICATED = [
    ("github", PUSH, {"X-GitHub-Event": "push"}),
    ("github", PUSH, {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256="}),
    ("github", PUSH, {"X-GitHub-Event": "push",
                      "X-Hub-Signature-256": hub_signature(PUSH + b" ", SECRET)}),
    ("github", PUSH, {"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=" + hmac.new(
        SECRET.encode(), PUSH, hashlib.sha1).hexdigest()}),  # SHA-1 only: not taken
    ("github", PUSH, {"X-GitHub-Event": "push", "X-Hub-Signature-256": hub_signature(
        PUSH, SECRET).upper()}),
    ("github", PUSH, {"X-GitHub-Event": "push", "X-Gitlab-Token": SECRET}),
    ("github", PUSH, {"X-GitHub-Event": "push", "Authorization": f"Bearer {SECRET}"}),
    ("gitea", GITEA_PUSH, {"X-Gitea-Event": "push", "X-Gitea-Signature": ""}),
    ("gitea", GITEA_PUSH, {"X-Gitea-Event": "push",
                           "X-Hub-Signature-256": hub_signature(GITEA_PUSH, SECRET)}),
    ("gitea", GITEA_PUSH, {"X-Gitea-Event": "push", "X-Gitea-Signature": SECRET}),
    ("gitlab", GITLAB_PUSH, {"X-Gitlab-Event": "Push Hook"}),
    ("gitlab", GITLAB_PUSH, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET[:-1]}),
    ("gitlab", GITLAB_PUSH, {"X-Gitlab-Event": "Push Hook",
                             "X-Gitlab-Token": hub_signature(GITLAB_PUSH, SECRET)}),
    ("azure-devops", AZURE_PUSH, {}),
    ("azure-devops", AZURE_PUSH, {"Authorization": basic(SECRET + "x")}),
    ("azure-devops", AZURE_PUSH, {"Authorization": "Basic " + base64.b64encode(
        f"{SECRET}:".encode()).decode()}),  # the secret as the user name is no password
]


@pytest.mark.parametrize("provider, data, headers", UNAUTHENTICATED)
async def test_an_unauthenticated_delivery_queues_nothing(served, provider, data, headers):
    client, store = served
    response = await client.post(f"/webhooks/{provider}", data=io.BytesIO(data),
                                 headers={"Content-Type": "application/json", **headers})
    assert response.status == 401
    assert await store.runs.queued() == []


async def test_each_secret_triggers_only_the_tasks_that_hold_it(served):
    client, store = served
    for secret, expected in ((SECRET, "x"), (OTHER, "y")):
        response = await client.post("/webhooks/github", data=io.BytesIO(PUSH), headers={
            "X-GitHub-Event": "push", "X-GitHub-Delivery": secret,
            "X-Hub-Signature-256": hub_signature(PUSH, secret)})
        assert response.status == 202
        [run_id] = (await response.json())["run_ids"]
        run = await store.runs.get(run_id)
        assert (run.task, run.status) == (expected, RunStatus.QUEUED)
    assert len(await store.runs.queued()) == 2


async def test_signatures_and_tokens_are_compared_in_constant_time(served, monkeypatch):
    client, _ = served
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signatures.hmac, "compare_digest", spy)
    for provider, data, headers in [
            ("github", PUSH, {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00"}),
            ("gitea", GITEA_PUSH, {"X-Gitea-Event": "push", "X-Gitea-Signature": "00"}),
            ("gitlab", GITLAB_PUSH, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "00"}),
            ("azure-devops", AZURE_PUSH, {"Authorization": basic("00")})]:
        compared.clear()
        response = await client.post(f"/webhooks/{provider}", data=io.BytesIO(data),
                                     headers=headers)
        assert response.status == 401
        # Every task's secret was tried, each through compare_digest.
        assert len(compared) == len(TASKS), provider
    with open(signatures.__file__) as source:
        text = source.read()
    assert "==" not in text.replace("compare_digest", "")


def test_the_body_cap_holds_under_a_memory_limit(bounded):
    # 256 MiB streamed at each receiver, signed or not: refused with 413 or 401 as it arrives,
    # within the 512 MiB the child may take.
    result = bounded("""
import asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from basewatch.http.source_webhooks import add_source_webhooks

from basewatch.tasks import Task
from tests.support.stores import open_store

class Tasks:
    async def all(self):
        return [Task("x", "https://h/x.git", ["reg/x:1"], webhook_secret_env="S")]

async def main():
    app = web.Application()
    add_source_webhooks(app, Tasks(), environ={"S": "secret"})
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        async def chunks():
            for _ in range(256):
                yield b" " * (1024 * 1024)
        for path, headers in (("github", {"X-Hub-Signature-256": "sha256=00"}),
                              ("gitea", {"X-Gitea-Signature": "00"}),
                              ("gitlab", {"X-Gitlab-Token": "x"}),
                              ("azure-devops", {"Authorization": "Basic dTpw"})):
            response = await client.post("/webhooks/" + path, data=chunks(), headers=headers)
            print(path, response.status)

asyncio.run(main())
""", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["github", "413", "gitea", "413", "gitlab", "401",
                                     "azure-devops", "401"]


async def test_the_routes_are_open_to_git_servers_and_the_api_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("X_SECRET", SECRET)
    async with running_daemon(tmp_path, monkeypatch) as daemon:
        # The receivers read whatever the store's task view returns.
        async def tasks(source=None):
            return TASKS[:1]

        monkeypatch.setattr(daemon.store.tasks, "all", tasks)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{daemon.url}/webhooks/github", data=PUSH, headers={
                    "X-GitHub-Event": "push", "X-GitHub-Delivery": "d",
                    "X-Hub-Signature-256": hub_signature(PUSH, SECRET)}) as response:
                assert response.status == 202
                answer = await response.json()
            async with session.post(f"{daemon.url}/webhooks/gitlab", data=GITLAB_PUSH,
                                    headers={"X-Gitlab-Event": "Push Hook",
                                             "X-Gitlab-Token": OTHER}) as response:
                assert response.status == 401
            async with session.get(f"{daemon.url}/api/runs") as response:
                assert response.status == 401
            async with session.get(f"{daemon.url}/metrics") as response:
                metrics = await response.text()
        # Signed by the task's secret: a run, without the API token; the forged one none.
        assert len(answer["run_ids"]) == 1
        assert 'basewatch_source_events_total{event="push",provider="github",result="queued"} ' \
               '1.0' in metrics
        assert [run.id for run in await daemon.store.runs.list()] == answer["run_ids"]


@pytest.mark.parametrize("ref", ["refs/heads/--upload-pack=touch /tmp/x", "refs/heads/-x",
                                 "refs/heads/a\nb", "refs/heads/a..b"])
async def test_a_signed_push_of_a_branch_git_would_misread_queues_nothing(served, ref):
    client, store = served
    data = PUSH.replace(b'"ref": "refs/heads/master"',
                        b'"ref": ' + json.dumps(ref).encode())
    assert data != PUSH
    response = await client.post("/webhooks/github", data=io.BytesIO(data), headers={
        "X-GitHub-Event": "push", "X-Hub-Signature-256": hub_signature(data, SECRET)})
    assert response.status == 400
    assert (await response.json())["error"] == "ref: not a valid branch name"
    assert await store.runs.queued() == []


async def test_a_delivery_reusing_another_ones_id_does_not_shadow_it(served):
    client, store = served
    # y's secret holder sends first, under the id x's real delivery will carry.
    decoy = body("github-pull_request-opened.json")
    for data, event, secret in ((decoy, "pull_request", OTHER), (PUSH, "push", SECRET)):
        response = await client.post("/webhooks/github", data=io.BytesIO(data), headers={
            "X-GitHub-Event": event, "X-GitHub-Delivery": "72d3162e-cc78-11e3",
            "X-Hub-Signature-256": hub_signature(data, secret)})
        assert response.status == 202
    assert sorted(run.task for run in await store.runs.queued()) == ["x", "y"]


@pytest.mark.parametrize("route, header", [
    (b"/webhooks/github", b"X-Hub-Signature-256: sha256=\xff\xfe"),
    (b"/webhooks/gitea", b"X-Gitea-Signature: \xc3\x28\xa0"),
    (b"/webhooks/gitlab", b"X-Gitlab-Token: " + SECRET.encode() + b"\xff"),
    (b"/webhooks/azure-devops", b"Authorization: Basic \xff\xfe\x80"),
])
async def test_a_non_utf8_signature_or_token_gets_401(tmp_path, monkeypatch, route, header):
    monkeypatch.setenv("X_SECRET", SECRET)
    async with running_daemon(tmp_path, monkeypatch) as daemon:
        async def tasks(source=None):
            return TASKS[:1]

        monkeypatch.setattr(daemon.store.tasks, "all", tasks)
        status, rest = await raw_request(
            daemon.url, b"POST " + route + b" HTTP/1.1\r\nHost: x\r\n" + header
            + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert status == 401, rest
    assert b"Traceback" not in rest
