"""A task's webhook on its repository, through the GitHub stand-in and a real SQLite store:
registered before the task is stored and removed again when storing fails, moved with the
context, shared by tasks on one repository, removed with the task; what to paste by hand."""
from __future__ import annotations

import pytest

from basewatch.errors import InvalidRequestError
from basewatch.netpolicy import HostPolicy
from basewatch.scm.api import ScmApi
from basewatch.scm.hosts import GitHostSettings, ScmError
from basewatch.task_webhooks import TaskWebhooks
from basewatch.tasks import Task
from tests.support.github_api import GitHubApi
from tests.support.stores import open_store

PUBLIC = "https://bw.example.com"
ENVIRON = {"GIT_TOKEN": "good-token", "BAD_TOKEN": "wrong", "HOOK_SECRET": "from-env"}


def task(name: str = "app", repo: str = "org/repo", token: str | None = "GIT_TOKEN",
         host: str = "", **settings) -> Task:
    return Task(name, f"http://{host}/{repo}.git#main", [f"reg/{name}:1"],
                git_access_token_env=token, **settings)


@pytest.fixture
async def github():
    async with GitHubApi(tokens={"good-token": {"all"}},
                         repositories=("org/repo", "org/other")) as server:
        yield server


@pytest.fixture
async def store(tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    yield store
    await store.close()


@pytest.fixture
async def hooks(github, store):
    host = f"127.0.0.1:{github.port}"
    async with ScmApi(HostPolicy(("127.0.0.1",), setting="git_hosts"), backoff=0.01) as api:
        webhooks = TaskWebhooks(store, api, [GitHostSettings(host=host, provider="github",
                                                             api_url=github.api_url)],
                                PUBLIC, ENVIRON)
        webhooks.host = host
        yield webhooks


async def test_a_task_with_a_token_gets_its_hook_and_the_secret_is_kept(hooks, github, store):
    async with hooks.kept_for(task(host=hooks.host)):
        pass
    [hook] = github.repositories["org/repo"].hooks.values()
    assert hook["events"] == ["push", "pull_request"]
    assert hook["config"]["url"] == f"{PUBLIC}/webhooks/github"
    kept = await store.webhooks.get("app")
    assert (kept.hook_id, kept.provider, hook["config"]["secret"]) == (hook["id"], "github",
                                                                        kept.secret)
    assert await hooks.secrets() == {"app": kept.secret}
    # Stored again with the same repository: nothing asked of the API.
    before = len(github.received)
    async with hooks.kept_for(task(host=hooks.host)):
        pass
    assert len(github.received) == before
    await hooks.removed(task(host=hooks.host))
    assert github.repositories["org/repo"].hooks == {}
    assert await store.webhooks.get("app") is None


async def test_a_bad_token_or_repository_fails_with_one_line_and_keeps_nothing(hooks, github,
                                                                               store):
    with pytest.raises(ScmError, match="refused the token in BAD_TOKEN"):
        async with hooks.kept_for(task(host=hooks.host, token="BAD_TOKEN")):
            raise AssertionError("the task must not be stored")
    with pytest.raises(ScmError, match="has no repository org/missing"):
        async with hooks.kept_for(task(host=hooks.host, repo="org/missing")):
            raise AssertionError("the task must not be stored")
    with pytest.raises(InvalidRequestError, match="UNSET, which is not set"):
        async with hooks.kept_for(task(host=hooks.host, token="UNSET")):
            raise AssertionError("the task must not be stored")
    assert await store.webhooks.all() == []
    assert github.repositories["org/repo"].hooks == {}


async def test_a_task_not_stored_takes_its_new_hook_away_again(hooks, github, store):
    with pytest.raises(RuntimeError):
        async with hooks.kept_for(task(host=hooks.host)):
            assert github.repositories["org/repo"].hooks
            raise RuntimeError("the Dockerfile does not parse")
    assert github.repositories["org/repo"].hooks == {}
    assert await store.webhooks.get("app") is None


async def test_a_store_failure_after_registering_removes_the_hook(hooks, github, store,
                                                                   monkeypatch):
    async def refuse(webhook):
        raise OSError("disk full")

    monkeypatch.setattr(store.webhooks, "put", refuse)
    with pytest.raises(OSError):
        async with hooks.kept_for(task(host=hooks.host)):
            raise AssertionError("the task must not be stored")
    assert github.repositories["org/repo"].hooks == {}


async def test_a_new_repository_moves_the_hook_and_a_dropped_token_removes_it(hooks, github,
                                                                              store):
    first = task(host=hooks.host)
    async with hooks.kept_for(first):
        pass
    moved = task(host=hooks.host, repo="org/other")
    async with hooks.kept_for(moved, first):
        pass
    assert github.repositories["org/repo"].hooks == {}
    assert len(github.repositories["org/other"].hooks) == 1
    async with hooks.kept_for(task(host=hooks.host, repo="org/other", token=None), moved):
        pass
    assert github.repositories["org/other"].hooks == {}
    assert await store.webhooks.get("app") is None


async def test_tasks_on_one_repository_share_its_hook_until_the_last_goes(hooks, github, store):
    one, two = task("one", host=hooks.host), task("two", host=hooks.host)
    for each in (one, two):
        async with hooks.kept_for(each):
            pass
    [hook] = github.repositories["org/repo"].hooks.values()
    assert (await store.webhooks.get("one")).secret == (await store.webhooks.get("two")).secret \
        == hook["config"]["secret"]
    await hooks.removed(one)
    assert list(github.repositories["org/repo"].hooks) == [hook["id"]]
    await hooks.removed(two)
    assert github.repositories["org/repo"].hooks == {}


async def test_without_public_url_a_task_that_needs_it_is_refused(github, store):
    async with ScmApi(HostPolicy(("127.0.0.1",), setting="git_hosts")) as api:
        host = f"127.0.0.1:{github.port}"
        hooks = TaskWebhooks(store, api, [GitHostSettings(host=host, provider="github",
                                                          api_url=github.api_url)],
                             None, ENVIRON)
        with pytest.raises(InvalidRequestError, match="needs the config's public_url"):
            async with hooks.kept_for(task(host=host)):
                pass
        with pytest.raises(InvalidRequestError, match="report_status .*public_url"):
            async with hooks.kept_for(task(token="GIT_TOKEN", host="example.com",
                                           report_status=True)):
                pass
    assert github.received == []


async def test_config_sync_logs_a_failure_for_healthz_and_clears_it_once_fixed(hooks, github):
    bad = task("cfg", host=hooks.host, token="BAD_TOKEN")
    await hooks.sync([bad])
    assert "refused the token in BAD_TOKEN" in hooks.problems["cfg"]
    good = task("cfg", host=hooks.host)
    await hooks.sync([good])
    assert hooks.problems == {}
    assert len(github.repositories["org/repo"].hooks) == 1
    await hooks.sync([], removed=[good])
    assert github.repositories["org/repo"].hooks == {}


async def test_by_hand_a_secret_is_generated_once_or_read_from_the_environment(hooks, store):
    plain = task(host=hooks.host, token=None)
    shown = await hooks.instructions(plain)
    assert (shown["provider"], shown["url"], shown["events"]) == (
        "github", f"{PUBLIC}/webhooks/github", ["Pushes", "Pull requests"])
    assert len(shown["secret"]) == 43 and not shown["registered"]
    assert f"  Secret: {shown['secret']}" in shown["instructions"]
    assert (await hooks.instructions(plain))["secret"] == shown["secret"]
    assert await hooks.secrets() == {"app": shown["secret"]}
    named = task("named", host=hooks.host, token=None, webhook_secret_env="HOOK_SECRET")
    assert (await hooks.instructions(named))["secret"] == "from-env"
    with pytest.raises(InvalidRequestError, match="not a git repository"):
        await hooks.instructions(Task("local", "/srv/app", ["reg/a:1"]))
    with pytest.raises(InvalidRequestError, match="git_hosts"):
        await hooks.instructions(task(host="git.unknown.example", token=None))
