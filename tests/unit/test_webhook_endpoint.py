"""POST /webhooks/registry on an in-process server: auth, limits, de-duplication, errors."""
from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from basewatch.errors import RegistryError, StoreBusyError
from basewatch.http.webhooks import MAX_BODY_BYTES, PATH, add_registry_webhook
from basewatch.watcher.notifications import DISTRIBUTION_EVENTS, PushNotification
from tests.support.stores import open_store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"  # see its README
TOKEN = "s3cret-token"
DIGEST = "sha256:" + "1" * 64
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def basic(username: str, password: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def envelope(*events: tuple[str, str, str | None]) -> bytes:
    """A distribution envelope of (id, action, tag) manifest events on registry.local:5000."""
    return json.dumps({"events": [
        {"id": event_id, "timestamp": "2024-05-02T10:15:00Z", "action": action,
         "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10,
                    "digest": DIGEST, "length": 10, "repository": "base",
                    **({"tag": tag} if tag else {})},
         "request": {"id": "r", "addr": "10.0.0.7", "host": "registry.local:5000",
                     "method": "PUT", "useragent": "docker"}}
        for event_id, action, tag in events]}).encode()


PUSH = envelope(("e1", "push", "1"), ("e2", "pull", "1"), ("e3", "push", None))
EVENTS_TYPE = {"Content-Type": DISTRIBUTION_EVENTS}


class Receiver:
    """Stands in for the daemon: records what it is handed and says it re-checked one each."""

    def __init__(self) -> None:
        self.calls: list[list[PushNotification]] = []
        self.failure: Exception | None = None

    async def __call__(self, pushes: list[PushNotification]) -> int:
        self.calls.append(pushes)
        if self.failure is not None:
            raise self.failure
        return len(pushes)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def serve(receiver):
    """serve(token) → a TestClient for an app with only the webhook on it."""
    clients: list[TestClient] = []

    async def start(token: str | None = TOKEN) -> TestClient:
        app = web.Application()
        add_registry_webhook(app, token, receiver)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        clients.append(client)
        await client.start_server()
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(serve) -> TestClient:
    return await serve()


async def post(client: TestClient, body: bytes = PUSH, headers: dict | None = None,
               path: str = PATH):
    # A file object: aiohttp warns about large raw bytes, and warnings are errors here.
    response = await client.post(path, data=io.BytesIO(body),
                                 headers={**EVENTS_TYPE, **(headers or {})})
    return response.status, await response.json(), response


async def test_tagged_push_with_bearer_token_is_accepted(client, receiver):
    status, answer, _ = await post(client, headers=BEARER)
    assert status == 202
    assert answer == {"accepted": 1, "duplicates": 0, "ignored": 2, "rejected": 0,
                      "rechecked": 1}
    assert receiver.calls == [[PushNotification("e1", "distribution", "registry.local:5000",
                                                "base", "1", DIGEST)]]


async def test_basic_auth_password_is_the_token_whatever_the_user(client, receiver):
    for username in ("basewatch", "registry", ""):
        body = envelope((f"basic-{username}", "push", "1"))
        status, answer, _ = await post(client, body, basic(username, TOKEN))
        assert (status, answer["accepted"]) == (202, 1)
    assert len(receiver.calls) == 3


async def test_token_in_the_query_for_registries_that_cannot_send_headers(client, receiver):
    body = (FIXTURES / "dockerhub-push.json").read_bytes()
    status, answer, _ = await post(client, body, {"Content-Type": "application/json"},
                                   path=f"{PATH}?token={TOKEN}")
    assert (status, answer["accepted"]) == (202, 1)
    [[push]] = receiver.calls
    assert (push.registry, push.repository, push.tag) == ("docker.io", "svendowideit/testhook",
                                                          "latest")


@pytest.mark.parametrize("headers, path", [
    ({}, PATH),
    ({"Authorization": "Bearer wrong"}, PATH),
    ({"Authorization": f"Bearer {TOKEN}x"}, PATH),
    ({"Authorization": "Bearer"}, PATH),
    ({"Authorization": f"Token {TOKEN}"}, PATH),
    (basic("basewatch", "wrong"), PATH),
    (basic(TOKEN, "wrong"), PATH),  # the token as the user name is not the password
    ({"Authorization": "Basic not-base64!"}, PATH),
    ({"Authorization": "Bearer jetón-ünïcode"}, PATH),
    ({}, f"{PATH}?token=wrong"),
])
async def test_missing_or_wrong_token_is_refused(client, receiver, headers, path):
    status, answer, response = await post(client, headers=headers, path=path)
    assert status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="basewatch"'
    assert "token" in answer["error"]
    assert receiver.calls == []


async def test_second_identical_delivery_counts_as_duplicate(client, receiver):
    await post(client, headers=BEARER)
    status, answer, _ = await post(client, headers=BEARER)
    assert status == 202
    assert answer == {"accepted": 0, "duplicates": 1, "ignored": 2, "rejected": 0,
                      "rechecked": 0}
    assert len(receiver.calls) == 1  # nothing new: the daemon is not asked


async def test_the_same_event_twice_in_one_body_is_handed_on_once(client, receiver):
    body = envelope(("same", "push", "1"), ("same", "push", "1"))
    _, answer, _ = await post(client, body, BEARER)
    assert (answer["accepted"], answer["duplicates"]) == (1, 1)


async def test_body_with_nothing_that_counts_does_not_reach_the_daemon(client, receiver):
    body = (FIXTURES / "harbor-push_artifact.json").read_bytes()
    status, answer, _ = await post(client, body, {**BEARER, "Content-Type": "application/json"})
    assert status == 202
    assert answer == {"accepted": 0, "duplicates": 0, "ignored": 1, "rejected": 0,
                      "rechecked": 0}
    assert receiver.calls == []


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not JSON"),
    (b'{"hello": "world"}', "unrecognised notification"),
])
async def test_bad_body_is_a_400_with_a_json_error(client, receiver, body, message):
    status, answer, _ = await post(client, body, {**BEARER, "Content-Type": "application/json"})
    assert status == 400
    assert message in answer["error"]
    assert receiver.calls == []


async def test_body_over_one_mebibyte_is_refused(client, receiver):
    body = b" " * (MAX_BODY_BYTES - len(PUSH)) + PUSH
    status, _, _ = await post(client, body, BEARER)
    assert status == 202  # exactly at the limit is fine
    status, answer, _ = await post(client, body + b" ", BEARER)
    assert status == 413
    assert "larger than" in answer["error"]


async def test_chunked_body_over_the_limit_is_refused_as_it_arrives(client, receiver):
    async def chunks():
        for _ in range(3):
            yield b" " * (MAX_BODY_BYTES // 2)

    response = await client.post(PATH, data=chunks(), headers={**EVENTS_TYPE, **BEARER})
    assert response.status == 413
    assert receiver.calls == []


async def test_unauthenticated_request_is_refused_before_the_size_check(client):
    status, _, _ = await post(client, b" " * (MAX_BODY_BYTES + 1))
    assert status == 401


async def test_without_a_token_configured_the_endpoint_is_off(serve, receiver):
    client = await serve(token=None)
    for headers in ({}, BEARER, {"Authorization": "Bearer "}):
        status, answer, _ = await post(client, headers=headers)
        assert status == 503
        assert answer == {"error": "notifications are not configured: set "
                                   "notifications.token_env in the config"}
    assert receiver.calls == []


async def test_empty_token_counts_as_not_configured(serve):
    client = await serve(token="")
    status, _, _ = await post(client, headers={"Authorization": "Bearer "})
    assert status == 503


async def test_failed_handling_is_a_503_and_the_redelivery_gets_through(client, receiver):
    receiver.failure = RegistryError("the store is closed")
    status, answer, _ = await post(client, headers=BEARER)
    assert (status, answer) == (503, {"error": "the store is closed"})
    receiver.failure = None
    status, answer, _ = await post(client, headers=BEARER)
    assert (status, answer["accepted"], answer["duplicates"]) == (202, 1, 0)


async def test_unexpected_failure_is_no_500_and_no_traceback(client, receiver, caplog):
    receiver.failure = KeyError("bug")
    status, answer, response = await post(client, headers=BEARER)
    assert status == 503
    assert "see the daemon log" in answer["error"]
    assert "Traceback" not in await response.text()
    assert "registry notification not handled" in caplog.text


async def test_only_post_is_served(client):
    response = await client.get(PATH, headers=BEARER)
    assert response.status == 405


async def test_a_newline_in_a_repository_forges_no_log_line(client, receiver, caplog):
    caplog.set_level("INFO")
    event = json.loads(envelope(("f", "push", "1")))["events"][0]
    forged = dict(event, id="g", target=dict(event["target"], repository=(
        "base\n2026-12-01 00:00:00,000 ERROR   basewatch.daemon: forged")))
    status, answer, _ = await post(client, json.dumps({"events": [event, forged]}).encode(),
                                   BEARER)
    assert status == 202
    assert answer == {"accepted": 1, "duplicates": 0, "ignored": 0, "rejected": 1,
                      "rechecked": 1}
    assert [push.repository for push in receiver.calls[0]] == ["base"]
    assert caplog.messages and not any("\n" in message for message in caplog.messages)


# --- several daemons on one database ----------------------------------------------------------

@pytest.fixture
async def two_daemons(tmp_path, receiver):
    """Two daemons' endpoints, each with its own memory of events and its own store on one
    database; the daemons' re-checks land in one receiver."""
    stores = [await open_store(tmp_path / "shared.db") for _ in range(2)]
    clients = []
    for store in stores:
        app = web.Application()
        add_registry_webhook(app, TOKEN, receiver, seen=store.notifications)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
    yield clients, stores
    for client in clients:
        await client.close()
    for store in stores:
        await store.close()


async def test_one_event_posted_to_two_daemons_is_handled_once(two_daemons, receiver):
    (first, second), _ = two_daemons
    answers = await asyncio.gather(post(first, headers=BEARER), post(second, headers=BEARER))
    assert sorted((status, a["accepted"], a["duplicates"]) for status, a, _ in answers) == [
        (202, 0, 1), (202, 1, 0)]
    assert [[push.id for push in call] for call in receiver.calls] == [["e1"]]
    # Sent again to either, it is a duplicate there too.
    for client in (first, second):
        status, answer, _ = await post(client, headers=BEARER)
        assert (status, answer["accepted"], answer["duplicates"]) == (202, 0, 1)
    assert len(receiver.calls) == 1


async def test_a_failed_handling_lets_the_retry_through_on_any_daemon(two_daemons, receiver):
    (first, second), _ = two_daemons
    receiver.failure = RegistryError("cannot reach registry.local:5000")
    status, _, _ = await post(first, headers=BEARER)
    assert status == 503
    receiver.failure = None
    # The registry's retry gets through, whichever daemon it reaches...
    status, answer, _ = await post(second, headers=BEARER)
    assert (status, answer["accepted"]) == (202, 1)
    # ...and the first, asked again, finds it handled.
    status, answer, _ = await post(first, headers=BEARER)
    assert (status, answer["accepted"], answer["duplicates"]) == (202, 0, 1)
    assert len(receiver.calls) == 2


async def test_a_store_that_refuses_is_a_503_and_the_retry_gets_through(two_daemons, receiver):
    (first, _), stores = two_daemons

    class Refusing:
        async def first_time(self, event_ids):
            raise StoreBusyError("database is locked")

        async def forget(self, event_ids):
            pass

    app = web.Application()
    refusing = Refusing()
    add_registry_webhook(app, TOKEN, receiver, seen=refusing)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        status, answer, _ = await post(client, headers=BEARER)
        assert (status, answer) == (503, {"error": "database is locked"})
        assert receiver.calls == []
        refusing.first_time = stores[0].notifications.first_time  # the store is back
        status, answer, _ = await post(client, headers=BEARER)
        assert (status, answer["accepted"]) == (202, 1)
    finally:
        await client.close()
