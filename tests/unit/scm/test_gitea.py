"""Gitea's and Forgejo's REST API v1, against a local stand-in that answers as their swagger
describes."""
from __future__ import annotations

import pytest

from basewatch.scm.gitea import Gitea
from basewatch.scm.hosts import GitHostSettings, ScmError, locate
from basewatch.scm.provider import CommitStatus, new_webhook_secret
from basewatch.scm.providers import provider_for
from tests.support.gitea_api import GiteaApi

HOOK_URL = "https://basewatch.example.com/webhooks/gitea"
SHA = "bd9b7d4ea8d2a6c0e7be10dbbd7e9c1b2a3e4f56"
TOKEN = "gitea-s3cr3t-token-value"


@pytest.fixture
async def gitea():
    async with GiteaApi(tokens={TOKEN: {"write:repository"}, "read-only": {"read:repository"}},
                        repositories=("owner/repo",)) as server:
        yield server


def client(api, server, token=TOKEN, path="owner/repo", provider="forgejo"):
    host = f"127.0.0.1:{server.port}"
    repo = locate(f"http://{host}/{path}.git",
                  [GitHostSettings(host=host, provider=provider, api_url=server.api_url)])
    return provider_for(repo, api, token, "GIT_TOKEN")


async def test_forgejo_and_gitea_hosts_get_the_gitea_client(api, gitea):
    assert isinstance(client(api, gitea, provider="forgejo"), Gitea)
    assert isinstance(client(api, gitea, provider="gitea"), Gitea)


async def test_registration_creates_the_hook_with_the_documented_request(api, gitea):
    secret = new_webhook_secret()
    registration = await client(api, gitea).register_webhook(HOOK_URL, secret)
    assert registration.created
    [listed, created] = gitea.received
    assert (listed.method, listed.path, listed.query) == (
        "GET", "/api/v1/repos/owner/repo/hooks", {"page": "1", "limit": "50"})
    assert (created.method, created.path) == ("POST", "/api/v1/repos/owner/repo/hooks")
    assert created.headers["Authorization"] == f"token {TOKEN}"
    assert created.body == {"type": "gitea", "active": True, "events": ["push", "pull_request"],
                            "branch_filter": "*",
                            "config": {"url": HOOK_URL, "content_type": "json",
                                       "secret": secret}}
    [hook] = gitea.repositories["owner/repo"].hooks.values()
    assert (hook["id"], hook["secret"], hook["active"]) == (registration.hook_id, secret, True)


async def test_registering_again_replaces_the_hook_since_gitea_keeps_a_secret(api, gitea):
    first = await client(api, gitea).register_webhook(HOOK_URL, "old")
    again = await client(api, gitea).register_webhook(HOOK_URL, "new")
    assert not again.created and again.hook_id != first.hook_id
    assert gitea.requests("DELETE")[-1].path == f"/api/v1/repos/owner/repo/hooks/{first.hook_id}"
    [hook] = gitea.repositories["owner/repo"].hooks.values()
    assert (hook["id"], hook["secret"]) == (again.hook_id, "new")


async def test_delete_removes_the_hook_and_a_second_delete_says_it_was_gone(api, gitea):
    registration = await client(api, gitea).register_webhook(HOOK_URL, "s")
    assert await client(api, gitea).delete_webhook(registration.hook_id) is True
    assert gitea.repositories["owner/repo"].hooks == {}
    assert await client(api, gitea).delete_webhook(registration.hook_id) is False


@pytest.mark.parametrize("state, sent", [
    ("pending", "pending"), ("running", "pending"), ("success", "success"),
    ("failure", "failure"), ("error", "error"), ("canceled", "error")])
async def test_each_state_posts_the_documented_status(api, gitea, state, sent):
    status = CommitStatus(state, "basewatch/web", f"the run is {state}",
                          "https://basewatch.example.com/api/runs/ca1/log")
    await client(api, gitea).post_status(SHA, status)
    [posted] = gitea.received
    assert (posted.method, posted.path) == ("POST", f"/api/v1/repos/owner/repo/statuses/{SHA}")
    assert posted.headers["Authorization"] == f"token {TOKEN}"
    assert posted.body == {"state": sent, "context": "basewatch/web",
                           "description": f"the run is {state}",
                           "target_url": "https://basewatch.example.com/api/runs/ca1/log"}


async def test_a_bad_token_a_missing_scope_and_an_unknown_repository(api, gitea):
    with pytest.raises(ScmError, match=r"refused the token in GIT_TOKEN \(401: token is "
                                       r"required\)"):
        await client(api, gitea, token="wrong").post_status(SHA, CommitStatus("success", "b/x"))
    with pytest.raises(ScmError, match=r"cannot set commit statuses on owner/repo \(403: .*\): "
                                       r"it needs the write:repository scope"):
        await client(api, gitea, token="read-only").post_status(
            SHA, CommitStatus("success", "b/x"))
    with pytest.raises(ScmError, match=r"has no repository owner/none, or the token in "
                                       r"GIT_TOKEN cannot see it \(404"):
        await client(api, gitea, path="owner/none").register_webhook(HOOK_URL, "s")


async def test_a_failing_server_is_tried_again_then_succeeds(api, gitea):
    gitea.fail_next(502)
    await client(api, gitea).register_webhook(HOOK_URL, "s")
    assert [r.method for r in gitea.received] == ["GET", "GET", "POST"]
