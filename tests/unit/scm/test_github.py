"""GitHub's REST API, against a local stand-in that answers as docs.github.com describes."""
from __future__ import annotations

import time

import pytest

from basewatch.netpolicy import HostPolicy
from basewatch.scm.api import ScmApi
from basewatch.scm.github import GitHub
from basewatch.scm.hosts import Repository, ScmError
from basewatch.scm.provider import CommitStatus, new_webhook_secret
from tests.support.github_api import GitHubApi

HOOK_URL = "https://basewatch.example.com/webhooks/github"
SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
TOKEN = "ghp_s3cr3t-token-value"


@pytest.fixture
async def github():
    async with GitHubApi(tokens={TOKEN: {"admin:repo_hook", "repo:status"},
                                 "status-only": {"repo:status"}}) as server:
        yield server


def client(api, server, token=TOKEN, path="org/repo"):
    return GitHub(api, Repository("github", server.api_url, path, "github.com"), token,
                  "GIT_TOKEN")


async def test_registration_creates_the_hook_with_the_documented_request(api, github):
    secret = new_webhook_secret()
    registration = await client(api, github).register_webhook(HOOK_URL, secret)
    assert registration.created
    [listed, created] = github.received
    assert (listed.method, listed.path, listed.query) == ("GET", "/repos/org/repo/hooks",
                                                          {"per_page": "100"})
    assert (created.method, created.path) == ("POST", "/repos/org/repo/hooks")
    assert created.headers["Accept"] == "application/vnd.github+json"
    assert created.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert created.headers["Authorization"] == f"Bearer {TOKEN}"
    assert created.headers["Content-Type"] == "application/json"
    assert created.body == {"name": "web", "active": True, "events": ["push", "pull_request"],
                            "config": {"url": HOOK_URL, "content_type": "json",
                                       "secret": secret, "insecure_ssl": "0"}}
    hooks = github.repositories["org/repo"].hooks
    assert list(hooks) == [registration.hook_id]
    assert hooks[registration.hook_id]["config"]["secret"] == secret


def test_webhook_secrets_are_256_bits_url_safe_and_new_each_time():
    secrets = {new_webhook_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(len(s) == 43 and s.replace("-", "").replace("_", "").isalnum() for s in secrets)


async def test_registering_again_updates_the_hook_instead_of_adding_one(api, github):
    first = await client(api, github).register_webhook(HOOK_URL, "old-secret")
    again = await client(api, github).register_webhook(HOOK_URL, "new-secret")
    assert (again.hook_id, again.created) == (first.hook_id, False)
    patch = github.requests("PATCH")[-1]
    assert patch.path == f"/repos/org/repo/hooks/{first.hook_id}"
    assert patch.body["config"]["secret"] == "new-secret"
    assert patch.body["events"] == ["push", "pull_request"]
    hooks = github.repositories["org/repo"].hooks
    assert len(hooks) == 1 and hooks[first.hook_id]["config"]["secret"] == "new-secret"


async def test_a_hook_for_another_url_is_left_alone(api, github):
    other = await client(api, github).register_webhook("https://ci.example.com/hook", "x")
    mine = await client(api, github).register_webhook(HOOK_URL, "y")
    assert mine.created and mine.hook_id != other.hook_id
    assert len(github.repositories["org/repo"].hooks) == 2


async def test_a_duplicate_made_elsewhere_is_removed_when_registering(api, github):
    hooks = github.repositories["org/repo"].hooks
    for hook_id in (7, 8):  # two hooks for our URL, e.g. made by hand before
        hooks[hook_id] = {"id": hook_id, "active": True, "events": ["push"],
                          "config": {"url": HOOK_URL, "content_type": "json"}}
    registration = await client(api, github).register_webhook(HOOK_URL, "s")
    assert (registration.hook_id, registration.created) == (7, False)
    assert list(hooks) == [7]


async def test_a_hook_that_appears_between_list_and_create_is_updated(api, github):
    """GitHub answers 422 "Hook already exists": the hook is found again and updated."""
    hooks = github.repositories["org/repo"].hooks
    github.fail_next(200, body=[])  # the list says there is none...
    hooks[5] = {"id": 5, "active": True, "events": ["push", "pull_request"],
                "config": {"url": HOOK_URL}}  # ...but there is
    registration = await client(api, github).register_webhook(HOOK_URL, "s")
    assert (registration.hook_id, registration.created) == (5, False)
    assert [r.method for r in github.received] == ["GET", "POST", "GET", "PATCH"]


async def test_listing_follows_the_link_header_across_pages(api, github):
    hooks = github.repositories["org/repo"].hooks
    for hook_id in range(1, 151):  # more than one page of 100
        hooks[hook_id] = {"id": hook_id, "active": True, "events": ["push"],
                          "config": {"url": f"https://other.example.com/{hook_id}"}}
    hooks[151] = {"id": 151, "active": True, "events": ["push"], "config": {"url": HOOK_URL}}
    registration = await client(api, github).register_webhook(HOOK_URL, "s")
    assert registration.hook_id == 151 and not registration.created
    assert [r.query.get("page") for r in github.requests("GET")] == [None, "2"]


async def test_delete_removes_the_hook_and_a_second_delete_says_it_was_gone(api, github):
    registration = await client(api, github).register_webhook(HOOK_URL, "s")
    assert await client(api, github).delete_webhook(registration.hook_id) is True
    delete = github.requests("DELETE")[-1]
    assert delete.path == f"/repos/org/repo/hooks/{registration.hook_id}"
    assert github.repositories["org/repo"].hooks == {}
    assert await client(api, github).delete_webhook(registration.hook_id) is False


@pytest.mark.parametrize("state, sent", [
    ("pending", "pending"), ("running", "pending"), ("success", "success"),
    ("failure", "failure"), ("error", "error"), ("canceled", "error")])
async def test_each_state_posts_the_documented_status(api, github, state, sent):
    status = CommitStatus(state, "basewatch/web", f"the run is {state}",
                          "https://basewatch.example.com/api/runs/ca1/log")
    await client(api, github).post_status(SHA, status)
    [posted] = github.received
    assert (posted.method, posted.path) == ("POST", f"/repos/org/repo/statuses/{SHA}")
    assert posted.headers["Accept"] == "application/vnd.github+json"
    assert posted.body == {"state": sent, "context": "basewatch/web",
                           "description": f"the run is {state}",
                           "target_url": "https://basewatch.example.com/api/runs/ca1/log"}
    assert github.repositories["org/repo"].statuses[-1]["state"] == sent


async def test_a_long_description_is_cut_to_what_github_takes(api, github):
    await client(api, github).post_status(SHA, CommitStatus("failure", "basewatch/web",
                                                            "step failed: " + "x" * 300))
    body = github.received[-1].body
    assert len(body["description"]) == 140 and "target_url" not in body


async def test_a_bad_token_is_one_clear_line_without_the_token(api, github):
    with pytest.raises(ScmError) as caught:
        await client(api, github, token="ghp_wrong-token").register_webhook(HOOK_URL, "s")
    message = str(caught.value)
    assert message == ("github.com refused the token in GIT_TOKEN (401: Bad credentials): it "
                       "is wrong, expired or revoked")
    assert "ghp_wrong-token" not in message and "\n" not in message


async def test_a_token_without_the_hook_scope_says_what_it_needs(api, github):
    with pytest.raises(ScmError, match=r"the token in GIT_TOKEN cannot create webhooks on "
                                       r"org/repo \(403: .*\): it needs .*admin:repo_hook"):
        await client(api, github, token="status-only").register_webhook(HOOK_URL, "s")
    await client(api, github, token="status-only").post_status(
        SHA, CommitStatus("success", "basewatch/web"))


async def test_an_unknown_repository_says_so(api, github):
    with pytest.raises(ScmError, match=r"github.com has no repository org/nothing, or the "
                                       r"token in GIT_TOKEN cannot see it \(404: Not Found\)"):
        await client(api, github, path="org/nothing").post_status(
            SHA, CommitStatus("pending", "basewatch/web"))
    with pytest.raises(ScmError, match="404"):
        await client(api, github, path="org/nothing").delete_webhook(1)


async def test_a_failing_server_is_tried_again_then_succeeds(api, github):
    github.fail_next(502, times=2)
    await client(api, github).post_status(SHA, CommitStatus("success", "basewatch/web"))
    assert [r.method for r in github.received] == ["POST"] * 3
    assert len(github.repositories["org/repo"].statuses) == 1


async def test_a_server_that_keeps_failing_is_one_error_after_the_attempts(api, github):
    github.fail_next(503, times=10)
    with pytest.raises(ScmError, match=r"failed \(503 Service Unavailable\) \(tried 4 times\)"):
        await client(api, github).post_status(SHA, CommitStatus("success", "basewatch/web"))
    assert len(github.received) == 4


@pytest.mark.parametrize("status, headers", [
    (429, {"Retry-After": "1"}),
    (403, {"Retry-After": "1"}),  # GitHub's secondary rate limit
    (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "+2"}),  # the primary one
])
async def test_a_rate_limit_waits_as_long_as_the_server_says(api, github, status, headers):
    if headers.get("X-RateLimit-Reset") == "+2":  # epoch seconds, from now
        headers = {**headers, "X-RateLimit-Reset": str(int(time.time()) + 2)}
    github.fail_next(status, headers=headers, body={"message": "API rate limit exceeded"})
    started = time.monotonic()
    await client(api, github).post_status(SHA, CommitStatus("success", "basewatch/web"))
    assert time.monotonic() - started >= 0.5  # not the 10 ms back-off of the fixture
    assert len(github.repositories["org/repo"].statuses) == 1


async def test_a_rate_limit_longer_than_the_daemon_waits_is_an_error_now(github):
    github.fail_next(429, headers={"Retry-After": "3600"})
    async with ScmApi(HostPolicy(("127.0.0.1",)), max_retry_after=5) as api:
        with pytest.raises(ScmError, match=r"rate limiting us \(429\) for 3600s more"):
            await client(api, github).post_status(SHA, CommitStatus("success", "basewatch/web"))
    assert len(github.received) == 1


async def test_a_provider_api_at_a_private_address_needs_the_host_listed(github):
    async with ScmApi(HostPolicy(setting="git_hosts")) as api:
        with pytest.raises(ScmError, match=r"may not be contacted: 127.0.0.1 is a loopback "
                                           r"address.*list the host in the config's git_hosts"):
            await client(api, github).post_status(SHA, CommitStatus("success", "basewatch/x"))
    assert github.received == []


async def test_a_name_resolving_to_a_private_address_is_refused_too(github):
    async with ScmApi(HostPolicy(setting="git_hosts")) as api:
        repo = Repository("github", f"http://localhost:{github.port}", "org/repo", "github.com")
        with pytest.raises(ScmError, match="localhost resolves to .*loopback"):
            await GitHub(api, repo, TOKEN).post_status(SHA, CommitStatus("success", "b/x"))
    assert github.received == []


async def test_github_enterprise_is_served_under_api_v3(api):
    async with GitHubApi(tokens={TOKEN: {"all"}}, prefix="/api/v3") as ghe:
        assert ghe.api_url.endswith("/api/v3")
        registration = await client(api, ghe).register_webhook(HOOK_URL, "s")
        assert ghe.received[-1].path == "/api/v3/repos/org/repo/hooks"
        assert registration.created


async def test_an_oversized_response_is_refused(api, github):
    github.fail_next(422, body={"message": "x" * (2 * 1024 * 1024)})
    with pytest.raises(ScmError, match="larger than 1024 KiB"):
        await client(api, github).post_status(SHA, CommitStatus("success", "basewatch/web"))


async def test_a_redirect_within_the_api_is_followed(api, github):
    """A renamed repository: GitHub answers 307 to where it is now."""
    github.fail_next(307, headers={"Location": f"{github.api_url}/repos/org/repo/statuses/{SHA}"})
    await client(api, github).post_status(SHA, CommitStatus("success", "basewatch/web"))
    assert len(github.repositories["org/repo"].statuses) == 1
    assert github.received[-1].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_a_redirect_to_another_host_is_refused_and_the_token_not_sent(api, github):
    github.fail_next(302, headers={"Location": "http://127.0.0.2:9/steal"})
    with pytest.raises(ScmError, match=r"redirected to http://127.0.0.2:9, where the token is "
                                       r"not sent"):
        await client(api, github).post_status(SHA, CommitStatus("success", "basewatch/web"))
    assert len(github.received) == 1


async def test_posting_quietly_gives_the_error_line_instead_of_raising(api, github):
    from basewatch.scm.provider import post_status_quietly

    status = CommitStatus("success", "basewatch/web")
    assert await post_status_quietly(client(api, github), SHA, status) is None
    line = await post_status_quietly(client(api, github, token="nope"), SHA, status)
    assert line.startswith("could not set the commit status basewatch/web on 6dcb09b5b578: "
                           "github.com refused the token in GIT_TOKEN (401")


async def test_a_server_that_does_not_answer_is_one_error_after_the_timeouts(github):
    github.hang_next(2)
    try:
        async with ScmApi(HostPolicy(("127.0.0.1",)), timeout=0.2, attempts=2,
                          backoff=0.01) as api:
            with pytest.raises(ScmError, match=r"did not answer within 0.2s \(tried 2 times\)"):
                await client(api, github).post_status(SHA, CommitStatus("success", "b/web"))
    finally:
        github.released.set()
    assert github.repositories["org/repo"].statuses == []


async def test_a_server_that_is_not_there_is_one_error_after_the_attempts(api):
    async with GitHubApi() as gone:
        repo = Repository("github", gone.api_url, "org/repo", "github.com")
    with pytest.raises(ScmError, match=r"cannot reach the API at http://127.0.0.1:\d+: connection refused "
                                       r"\(tried 4 times\); try again later"):
        await GitHub(api, repo, TOKEN).post_status(SHA, CommitStatus("success", "b/web"))
