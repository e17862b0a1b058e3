"""GitLab's REST API v4, against a local stand-in that answers as docs.gitlab.com describes."""
from __future__ import annotations

import pytest

from basewatch.scm.gitlab import GitLab
from basewatch.scm.hosts import GitHostSettings, Repository, ScmError, locate
from basewatch.scm.provider import CommitStatus, new_webhook_secret
from tests.support.gitlab_api import GitLabApi

HOOK_URL = "https://basewatch.example.com/webhooks/gitlab"
SHA = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
TOKEN = "glpat-s3cr3t-token-value"
PROJECT = "group/sub/project"
ENCODED = "group%2Fsub%2Fproject"


@pytest.fixture
async def gitlab():
    async with GitLabApi(tokens={TOKEN: {"maintainer"}, "dev-token": {"developer"}},
                         repositories=(PROJECT,)) as server:
        yield server


def client(api, server, token=TOKEN, path=PROJECT):
    return GitLab(api, Repository("gitlab", server.api_url, path, "gitlab.example.com"),
                  token, "GIT_TOKEN")


async def test_registration_creates_the_hook_with_the_documented_request(api, gitlab):
    secret = new_webhook_secret()
    registration = await client(api, gitlab).register_webhook(HOOK_URL, secret)
    assert registration.created
    [listed, created] = gitlab.received
    assert (listed.method, listed.path, listed.query) == (
        "GET", f"/api/v4/projects/{ENCODED}/hooks", {"per_page": "100"})
    assert (created.method, created.path) == ("POST", f"/api/v4/projects/{ENCODED}/hooks")
    assert created.headers["PRIVATE-TOKEN"] == TOKEN
    assert "Authorization" not in created.headers
    assert created.body == {"url": HOOK_URL, "token": secret, "push_events": True,
                            "merge_requests_events": True, "tag_push_events": False,
                            "enable_ssl_verification": True}
    hooks = gitlab.repositories[PROJECT].hooks
    assert list(hooks) == [registration.hook_id] and hooks[registration.hook_id]["token"] == secret


async def test_the_project_is_located_from_its_clone_url_on_a_configured_host(api, gitlab):
    host = f"127.0.0.1:{gitlab.port}"
    repo = locate(f"http://{host}/{PROJECT}.git#main",
                  [GitHostSettings(host=host, provider="gitlab", api_url=gitlab.api_url)])
    assert (repo.provider, repo.path) == ("gitlab", PROJECT)
    await GitLab(api, repo, TOKEN).register_webhook(HOOK_URL, "s")
    assert len(gitlab.repositories[PROJECT].hooks) == 1


async def test_registering_again_updates_the_hook_instead_of_adding_one(api, gitlab):
    first = await client(api, gitlab).register_webhook(HOOK_URL, "old")
    again = await client(api, gitlab).register_webhook(HOOK_URL, "new")
    assert (again.hook_id, again.created) == (first.hook_id, False)
    put = gitlab.requests("PUT")[-1]
    assert put.path == f"/api/v4/projects/{ENCODED}/hooks/{first.hook_id}"
    assert put.body["token"] == "new" and put.body["url"] == HOOK_URL
    hooks = gitlab.repositories[PROJECT].hooks
    assert len(hooks) == 1 and hooks[first.hook_id]["token"] == "new"


async def test_duplicates_for_our_url_are_removed(api, gitlab):
    hooks = gitlab.repositories[PROJECT].hooks
    hooks[3] = {"id": 3, "url": HOOK_URL}
    hooks[4] = {"id": 4, "url": HOOK_URL}
    hooks[9] = {"id": 9, "url": "https://elsewhere.example.com/"}
    registration = await client(api, gitlab).register_webhook(HOOK_URL, "s")
    assert (registration.hook_id, registration.created) == (3, False)
    assert sorted(hooks) == [3, 9]


async def test_delete_removes_the_hook_and_a_second_delete_says_it_was_gone(api, gitlab):
    registration = await client(api, gitlab).register_webhook(HOOK_URL, "s")
    assert await client(api, gitlab).delete_webhook(registration.hook_id) is True
    assert gitlab.requests("DELETE")[-1].path == \
        f"/api/v4/projects/{ENCODED}/hooks/{registration.hook_id}"
    assert gitlab.repositories[PROJECT].hooks == {}
    assert await client(api, gitlab).delete_webhook(registration.hook_id) is False


@pytest.mark.parametrize("state, sent", [
    ("pending", "pending"), ("running", "running"), ("success", "success"),
    ("failure", "failed"), ("error", "failed"), ("canceled", "canceled")])
async def test_each_state_posts_the_documented_status(api, gitlab, state, sent):
    status = CommitStatus(state, "basewatch/web", f"the run is {state}",
                          "https://basewatch.example.com/api/runs/ca1/log")
    await client(api, gitlab).post_status(SHA, status)
    [posted] = gitlab.received
    assert (posted.method, posted.path) == ("POST", f"/api/v4/projects/{ENCODED}/statuses/{SHA}")
    assert posted.headers["PRIVATE-TOKEN"] == TOKEN
    assert posted.body == {"state": sent, "name": "basewatch/web",
                           "description": f"the run is {state}",
                           "target_url": "https://basewatch.example.com/api/runs/ca1/log"}
    assert gitlab.repositories[PROJECT].statuses[-1]["status"] == sent


async def test_a_run_goes_pending_running_success_and_a_repeat_is_no_error(api, gitlab):
    provider = client(api, gitlab, token="dev-token")  # statuses need Developer only
    for state in ("pending", "pending", "running", "running", "success"):
        await provider.post_status(SHA, CommitStatus(state, "basewatch/web"))
    assert [s["status"] for s in gitlab.repositories[PROJECT].statuses] == [
        "pending", "running", "success"]


async def test_a_bad_token_is_one_clear_line_without_the_token(api, gitlab):
    with pytest.raises(ScmError) as caught:
        await client(api, gitlab, token="glpat-wrong").register_webhook(HOOK_URL, "s")
    assert str(caught.value) == ("gitlab.example.com refused the token in GIT_TOKEN (401: 401 "
                                 "Unauthorized): it is wrong, expired or revoked")
    assert "glpat-wrong" not in str(caught.value)


async def test_a_developer_cannot_register_hooks_and_is_told_what_it_needs(api, gitlab):
    with pytest.raises(ScmError, match=r"cannot create webhooks on group/sub/project \(403: 403 "
                                       r"Forbidden\): it needs the api scope, and the "
                                       r"Maintainer role"):
        await client(api, gitlab, token="dev-token").register_webhook(HOOK_URL, "s")


async def test_an_unknown_project_says_so(api, gitlab):
    with pytest.raises(ScmError, match=r"gitlab.example.com has no repository group/nothing, "
                                       r"or the token in GIT_TOKEN cannot see it \(404: 404 "
                                       r"Project Not Found\)"):
        await client(api, gitlab, path="group/nothing").register_webhook(HOOK_URL, "s")


async def test_a_failing_server_is_tried_again_then_succeeds(api, gitlab):
    gitlab.fail_next(500)
    gitlab.fail_next(429, headers={"Retry-After": "0"})
    await client(api, gitlab).post_status(SHA, CommitStatus("success", "basewatch/web"))
    assert len(gitlab.received) == 3
    assert len(gitlab.repositories[PROJECT].statuses) == 1


async def test_an_invalid_state_from_the_server_is_reported_with_its_words(api, gitlab):
    gitlab.fail_next(400, body={"error": "target_url must be a valid URL"})
    with pytest.raises(ScmError, match=r"refused to set commit statuses on it \(400 Bad "
                                       r"Request: target_url must be a valid URL\)"):
        await client(api, gitlab).post_status(SHA, CommitStatus("success", "basewatch/web"))
