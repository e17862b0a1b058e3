"""POST /webhooks/{github,gitlab,azure-devops,gitea} on an in-process server, with a recording
sink: each provider's published example, signed as that provider signs, reaches the sink as
the right SourceEvent; bad auth, bad bodies, unknown events and redeliveries reach nothing."""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from collections.abc import Collection
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from basewatch.errors import StoreBusyError
from basewatch.http.source_webhooks import MAX_BODY_BYTES, add_source_webhooks
from basewatch.metrics import Metrics
from basewatch.tasks import Task
from basewatch.triggers.source_events import SourceEvent, SourceOutcome
from tests.unit.triggers.webhooks.fixtures import body, encoded, payload

SECRET = "s3cret-of-repo-x"
OTHER = "s3cret-of-repo-y"
ENVIRON = {"X_SECRET": SECRET, "Y_SECRET": OTHER, "EMPTY": ""}


def task(name: str, secret_env: str | None) -> Task:
    return Task(name, "https://example.com/x.git", [f"reg/{name}:1"],
                webhook_secret_env=secret_env)


class Tasks:
    def __init__(self) -> None:
        self.tasks = [task("x", "X_SECRET"), task("x-too", "X_SECRET"), task("y", "Y_SECRET"),
                      task("unset", "NOT_SET"), task("empty", "EMPTY"), task("none", None)]
        self.failure: Exception | None = None

    async def all(self) -> list[Task]:
        if self.failure is not None:
            raise self.failure
        return self.tasks


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[SourceEvent, frozenset[str] | None]] = []
        self.failure: Exception | None = None

    async def on_event(self, event: SourceEvent, tasks: Collection[str] | None = None
                       ) -> SourceOutcome:
        self.calls.append((event, None if tasks is None else frozenset(tasks)))
        if self.failure is not None:
            raise self.failure
        return SourceOutcome(run_ids=(f"run{len(self.calls)}",))


def github_signed(event: str, data: bytes, secret: str = SECRET, delivery: str = "d-1",
                  content_type: str = "application/json") -> dict[str, str]:
    digest = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": f"sha256={digest}", "Content-Type": content_type,
            "User-Agent": "GitHub-Hookshot/044aadd"}


def gitea_signed(event: str, data: bytes, secret: str = SECRET, forgejo: bool = False
                 ) -> dict[str, str]:
    digest = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
    headers = {"X-Gitea-Event": event, "X-Gitea-Delivery": "f6266f16",
               "X-Gitea-Signature": digest, "X-Hub-Signature-256": f"sha256={digest}",
               "Content-Type": "application/json"}
    if forgejo:
        headers.update({"X-Forgejo-Event": event, "X-Forgejo-Delivery": "f6266f16",
                        "X-Forgejo-Signature": digest})
    return headers


def gitlab_headers(event: str, token: str = SECRET) -> dict[str, str]:
    return {"X-Gitlab-Event": event, "X-Gitlab-Token": token, "Content-Type": "application/json",
            "Idempotency-Key": "f5e5f430-f57b-4e6e-9fac-d9128cd7232f"}


def azure_headers(password: str = SECRET) -> dict[str, str]:
    credentials = base64.b64encode(f"basewatch:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}",
            "Content-Type": "application/json; charset=utf-8"}


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def tasks() -> Tasks:
    return Tasks()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def client(sink, tasks, metrics):
    app = web.Application()
    add_source_webhooks(app, tasks, metrics, sink, environ=ENVIRON)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


async def post(client: TestClient, path: str, data: bytes, headers: dict[str, str]):
    # A file object: aiohttp warns about large raw bytes, and warnings are errors here.
    response = await client.post(path, data=io.BytesIO(data), headers=headers)
    return response.status, await response.json(), response


def counted(metrics: Metrics, provider: str, event: str, result: str) -> float:
    return metrics.registry.get_sample_value("basewatch_source_events_total", {
        "provider": provider, "event": event, "result": result}) or 0.0


# --- each provider's published example reaches the sink ---------------------------------------

async def test_github_push_reaches_the_sink_for_the_tasks_holding_the_secret(client, sink,
                                                                             metrics):
    data = body("github-push.json")
    status, answer, _ = await post(client, "/webhooks/github", data, github_signed("push", data))
    assert status == 202
    [(event, eligible)] = sink.calls
    assert (event.provider, event.kind, event.branch, event.commit, event.delivery) == (
        "github", "push", "master", "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "d-1")
    assert eligible == {"x", "x-too"}
    assert answer["run_ids"] == ["run1"]
    assert answer["events"] == [{"kind": "push", "branch": "master",
                                 "commit": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                                 "pull_request": None, "run_ids": ["run1"], "reason": ""}]
    assert counted(metrics, "github", "push", "queued") == 1


async def test_a_delivery_signed_with_another_repositorys_secret_reaches_only_its_tasks(
        client, sink):
    data = body("github-push.json")
    await post(client, "/webhooks/github", data, github_signed("push", data, OTHER))
    [(_, eligible)] = sink.calls
    assert eligible == {"y"}


@pytest.mark.parametrize("name", ["github-pull_request-opened.json",
                                  "github-pull_request-synchronize.json"])
async def test_github_pull_request(client, sink, name):
    data = body(name)
    status, answer, _ = await post(client, "/webhooks/github", data,
                                   github_signed("pull_request", data))
    assert status == 202
    [(event, _)] = sink.calls
    assert (event.kind, event.pull_request, event.fetch_ref, event.commit) == (
        "pull_request", 2, "refs/pull/2/head", "ec26c3e57ca3a959ca5aad62de7213c562f8c821")


async def test_github_form_encoded_delivery(client, sink):
    data = urlencode({"payload": body("github-push.json").decode()}).encode()
    status, _, _ = await post(client, "/webhooks/github", data, github_signed(
        "push", data, content_type="application/x-www-form-urlencoded"))
    assert status == 202
    assert sink.calls[0][0].branch == "master"


async def test_github_ping_is_a_200_and_queues_nothing(client, sink, metrics):
    data = body("github-ping.json")
    status, answer, _ = await post(client, "/webhooks/github", data, github_signed("ping", data))
    assert (status, answer) == (200, {"ping": "ok", "tasks": 2})
    assert sink.calls == []
    assert counted(metrics, "github", "ping", "ping") == 1


async def test_gitlab_push_and_merge_request(client, sink):
    for event, name in (("Push Hook", "gitlab-push-hook.json"),
                        ("Merge Request Hook", "gitlab-merge-request-hook.json")):
        status, _, _ = await post(client, "/webhooks/gitlab", body(name), gitlab_headers(event))
        assert status == 202
    (push, eligible), (merge_request, _) = sink.calls
    assert (push.provider, push.branch, push.commit) == (
        "gitlab", "master", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7")
    assert (merge_request.kind, merge_request.fetch_ref) == (
        "pull_request", "refs/merge-requests/1/head")
    assert eligible == {"x", "x-too"}


async def test_azure_devops_push_and_pull_request(client, sink):
    for name in ("azure-devops-git.push.json", "azure-devops-git.pullrequest.created.json"):
        status, _, _ = await post(client, "/webhooks/azure-devops", body(name), azure_headers())
        assert status == 202
    (push, _), (pull, _) = sink.calls
    assert (push.provider, push.branch, push.delivery) == (
        "azure-devops", "master", "03c164c2-8912-4d5e-8009-3707d5f83734")
    assert (pull.commit, pull.fetch_ref) == ("53d54ac915144006c2c9e90d2c7d3880920db49c",
                                             "refs/pull/1/merge")


async def test_gitea_and_forgejo_push(client, sink, metrics):
    data = body("gitea-push.json")
    assert (await post(client, "/webhooks/gitea", data, gitea_signed("push", data)))[0] == 202
    data = body("forgejo-push.json")
    assert (await post(client, "/webhooks/gitea", data,
                       gitea_signed("push", data, forgejo=True)))[0] == 202
    assert [event.provider for event, _ in sink.calls] == ["gitea", "forgejo"]
    assert counted(metrics, "forgejo", "push", "queued") == 1


async def test_an_ignored_event_is_answered_with_its_reason_and_not_handed_on(client, sink,
                                                                              metrics):
    data = body("github-push-tag-deleted.json")
    status, answer, _ = await post(client, "/webhooks/github", data, github_signed("push", data))
    assert status == 202
    assert answer["run_ids"] == []
    assert answer["events"][0]["reason"] == "'refs/tags/simple-tag' is a tag"
    assert sink.calls == []
    assert counted(metrics, "github", "push", "ignored") == 1


async def test_without_commit_triggers_deliveries_are_answered_and_nothing_is_queued(tasks):
    app = web.Application()
    add_source_webhooks(app, tasks, environ=ENVIRON)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        data = body("github-push.json")
        status, answer, _ = await post(client, "/webhooks/github", data,
                                       github_signed("push", data))
    assert (status, answer["run_ids"]) == (202, [])
    assert answer["events"][0]["reason"] == "commit triggers are not available"


# --- what reaches nothing ---------------------------------------------------------------------

def forged(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}


@pytest.mark.parametrize("path, headers", [
    ("/webhooks/github", forged(github_signed("push", b"x"))),
    ("/webhooks/github", github_signed("push", body("github-push.json"), "NOT_SET")),
    ("/webhooks/github", github_signed("push", body("github-push.json"), "")),
    ("/webhooks/github", {"X-GitHub-Event": "push", "Content-Type": "application/json"}),
    ("/webhooks/github", {**github_signed("push", body("github-push.json")),
                          "X-Hub-Signature-256": github_signed(
                              "push", body("github-push.json"))["X-Hub-Signature-256"][7:]}),
    ("/webhooks/gitea", gitea_signed("push", body("gitea-push.json"))),
    ("/webhooks/gitea", {**gitea_signed("push", b""), "X-Gitea-Signature": ""}),
    ("/webhooks/gitlab", gitlab_headers("Push Hook", "wrong")),
    ("/webhooks/gitlab", gitlab_headers("Push Hook", SECRET + "x")),
    ("/webhooks/gitlab", {"X-Gitlab-Event": "Push Hook"}),
    ("/webhooks/azure-devops", azure_headers("wrong")),
    ("/webhooks/azure-devops", {"Authorization": f"Bearer {SECRET}"}),
    ("/webhooks/azure-devops", {}),
])
async def test_a_forged_or_missing_signature_is_a_401_and_reaches_nothing(client, sink, metrics,
                                                                          path, headers):
    status, answer, response = await post(client, path, body("github-push.json"), headers)
    assert status == 401
    assert "secret" in answer["error"] or "missing" in answer["error"]
    assert sink.calls == []
    provider = path.removeprefix("/webhooks/")
    assert counted(metrics, provider, "unknown", "unauthorized") == 1
    if provider == "azure-devops":
        assert response.headers["WWW-Authenticate"] == 'Basic realm="basewatch"'


async def test_a_delivery_is_refused_when_no_task_has_a_secret_set(client, sink, tasks):
    tasks.tasks = [task("unset", "NOT_SET"), task("none", None)]
    data = body("github-push.json")
    status, _, _ = await post(client, "/webhooks/github", data,
                              github_signed("push", data, ""))
    assert status == 401
    huge = b" " * (MAX_BODY_BYTES + 1)  # not read: no secret could verify it
    status, _, _ = await post(client, "/webhooks/github", huge, github_signed("push", huge, ""))
    assert status == 401
    assert sink.calls == []


@pytest.mark.parametrize("path, data, headers, message", [
    ("/webhooks/github", b"{not json", github_signed("push", b"{not json"),
     "the body is not valid JSON"),
    ("/webhooks/github", b"{}", {**github_signed("push", b"{}"), "X-GitHub-Event": ""},
     "the X-GitHub-Event header is missing"),
    ("/webhooks/github", b'{"ref": "refs/heads/main"}',
     github_signed("push", b'{"ref": "refs/heads/main"}'), "after: missing"),
    ("/webhooks/gitlab", b"[]", gitlab_headers("Push Hook"), "the body must be a JSON object"),
    ("/webhooks/gitlab", body("gitlab-push-hook.json"),
     {"X-Gitlab-Token": SECRET, "Content-Type": "application/json"},
     "the X-Gitlab-Event header is missing"),
    ("/webhooks/azure-devops", b"\xff", azure_headers(), "the body is not valid JSON"),
    ("/webhooks/gitea", body("gitea-pull_request-opened.json"),
     gitea_signed("pull_request", body("gitea-pull_request-opened.json")),
     "pull_request.base.repo.id: missing"),
])
async def test_a_malformed_delivery_is_a_400_with_one_line(client, sink, metrics, path, data,
                                                           headers, message):
    status, answer, _ = await post(client, path, data, headers)
    assert (status, answer) == (400, {"error": message})
    assert sink.calls == []
    assert counted(metrics, path.removeprefix("/webhooks/"), "unknown", "malformed") == 1


@pytest.mark.parametrize("path, headers", [
    ("/webhooks/github", github_signed("issues", b"{}")),
    ("/webhooks/gitlab", gitlab_headers("Issue Hook")),
    ("/webhooks/gitea", gitea_signed("create", b"{}")),
])
async def test_an_unknown_event_is_a_202_saying_so_and_reaches_nothing(client, sink, metrics,
                                                                       path, headers):
    status, answer, _ = await post(client, path, b"{}", headers)
    assert status == 202
    assert answer["run_ids"] == [] and "is not one basewatch builds on" in answer["reason"]
    assert sink.calls == []
    assert counted(metrics, path.removeprefix("/webhooks/"), "other", "unwanted") == 1


async def test_azure_devops_unknown_event_type(client, sink):
    data = encoded({"id": "1", "eventType": "workitem.created"})
    status, answer, _ = await post(client, "/webhooks/azure-devops", data, azure_headers())
    assert status == 202 and "'workitem.created'" in answer["reason"]
    assert sink.calls == []


async def test_an_oversized_body_is_a_413(client, sink, metrics):
    data = body("github-push.json")
    padded = data + b" " * (MAX_BODY_BYTES - len(data))
    status, _, _ = await post(client, "/webhooks/github", padded,
                              github_signed("push", padded))
    assert status == 202  # exactly at the limit is fine
    padded += b" "
    status, answer, _ = await post(client, "/webhooks/github", padded,
                                   github_signed("push", padded, delivery="d-2"))
    assert status == 413 and "larger than" in answer["error"]
    assert len(sink.calls) == 1
    assert counted(metrics, "github", "unknown", "too_large") == 1


async def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(client, sink):
    async def chunks():
        for _ in range(3):
            yield b" " * (MAX_BODY_BYTES // 2)

    response = await client.post("/webhooks/gitea", data=chunks(),
                                 headers=gitea_signed("push", b"x"))
    assert response.status == 413
    assert sink.calls == []


async def test_a_token_provider_refuses_an_unauthenticated_body_before_reading_it(client, sink):
    status, _, _ = await post(client, "/webhooks/gitlab", b" " * (MAX_BODY_BYTES + 1),
                              gitlab_headers("Push Hook", "wrong"))
    assert status == 401


# --- redeliveries and failures ----------------------------------------------------------------

async def test_a_redelivery_reaches_the_sink_once(client, sink, metrics):
    data = body("github-push.json")
    first = await post(client, "/webhooks/github", data, github_signed("push", data))
    again = await post(client, "/webhooks/github", data, github_signed("push", data))
    assert first[0] == again[0] == 202
    assert again[1] == {"run_ids": [], "duplicate": True,
                        "reason": "this delivery was already received"}
    assert len(sink.calls) == 1
    assert counted(metrics, "github", "push", "duplicate") == 1


async def test_another_body_under_a_seen_delivery_id_is_not_a_duplicate(client, sink):
    # Nobody holding a secret can shadow another repository's delivery by guessing its id.
    first, second = body("github-push.json"), body("github-pull_request-opened.json")
    await post(client, "/webhooks/github", first, github_signed("push", first, OTHER))
    await post(client, "/webhooks/github", second, github_signed("pull_request", second))
    assert len(sink.calls) == 2


async def test_gitlab_and_azure_redeliveries_reach_the_sink_once(client, sink):
    for _ in range(2):
        await post(client, "/webhooks/gitlab", body("gitlab-push-hook.json"),
                   gitlab_headers("Push Hook"))
        await post(client, "/webhooks/azure-devops", body("azure-devops-git.push.json"),
                   azure_headers())
    assert [event.provider for event, _ in sink.calls] == ["gitlab", "azure-devops"]


async def test_a_failed_sink_is_a_503_and_the_redelivery_gets_through(client, sink, metrics):
    data = body("github-push.json")
    sink.failure = StoreBusyError("the database is locked")
    status, answer, _ = await post(client, "/webhooks/github", data, github_signed("push", data))
    assert (status, answer) == (503, {"error": "the database is locked"})
    sink.failure = None
    status, answer, _ = await post(client, "/webhooks/github", data, github_signed("push", data))
    assert (status, len(sink.calls)) == (202, 2)
    assert counted(metrics, "github", "push", "error") == 1


async def test_an_unexpected_failure_is_no_500_and_no_traceback(client, sink, caplog):
    sink.failure = KeyError("bug")
    data = body("github-push.json")
    status, answer, response = await post(client, "/webhooks/github", data,
                                          github_signed("push", data))
    assert status == 503 and "see the daemon log" in answer["error"]
    assert "Traceback" not in await response.text()


async def test_a_busy_store_is_a_503(client, sink, tasks):
    tasks.failure = StoreBusyError("the database is locked")
    data = body("github-push.json")
    status, _, _ = await post(client, "/webhooks/github", data, github_signed("push", data))
    assert status == 503
    assert sink.calls == []


async def test_only_post_is_served(client):
    for path in ("/webhooks/github", "/webhooks/gitlab", "/webhooks/azure-devops",
                 "/webhooks/gitea"):
        assert (await client.get(path)).status == 405


async def test_an_event_name_cannot_forge_a_log_line(client, caplog):
    caplog.set_level("INFO")
    value = payload("github-pull_request-opened.json")
    value["action"] = "closed\n2026-12-01 00:00:00,000 ERROR forged"
    data = json.dumps(value).encode()
    status, _, _ = await post(client, "/webhooks/github", data,
                              github_signed("pull_request", data))
    assert status == 202
    assert caplog.messages and not any("\n" in message for message in caplog.messages)


# --- secrets the daemon keeps (hooks it registered, `task webhook`) ---------------------------

async def test_a_kept_secret_verifies_only_for_the_tasks_that_hold_it(tasks):
    kept = {"none": "kept-secret-of-none", "y": "kept-secret-of-y", "gone": "kept-of-a-gone-task"}

    async def kept_secrets() -> dict[str, str]:
        return kept

    sink = RecordingSink()
    app = web.Application()
    add_source_webhooks(app, tasks, sink=sink, environ=ENVIRON, kept_secrets=kept_secrets)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        data = body("github-push.json")
        for secret, delivery in (("kept-secret-of-none", "d-1"), ("kept-secret-of-y", "d-2"),
                                 (OTHER, "d-3")):
            status, _, _ = await post(client, "/webhooks/github", data,
                                      github_signed("push", data, secret, delivery))
            assert status == 202
        # A secret kept for a task no longer there verifies nothing.
        status, _, _ = await post(client, "/webhooks/github", data,
                                  github_signed("push", data, "kept-of-a-gone-task", "d-4"))
        assert status == 401
    assert [eligible for _, eligible in sink.calls] == [{"none"}, {"y"}, {"y"}]
