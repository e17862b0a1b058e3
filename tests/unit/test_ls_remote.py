"""`git ls-remote` of a remote's branches, over file:// and smart HTTP (git http-backend), held
to the same rules as a fetch: the host policy, credentials through the environment, a timeout,
bounded output, and one clear line when it fails."""
from __future__ import annotations

import pytest

from basewatch.builder.contexts import fetch
from basewatch.builder.contexts.checkout import Checkouts
from basewatch.builder.contexts.fetch import GitCredential, list_remote_heads
from basewatch.context_spec import ContextError
from basewatch.netpolicy import HostPolicy
from tests.support.git_http import GitHttpServer
from tests.support.git_remotes import GitRemote


@pytest.fixture
def remote(tmp_path) -> GitRemote:
    remote = GitRemote.create(tmp_path / "served" / "app.git")
    remote.commit("dev")
    remote.tag("v1")
    return remote


async def test_lists_the_branches_asked_and_the_default_branch_over_file(remote):
    heads = await list_remote_heads(remote.url, ["dev"])
    assert heads.heads == {"dev": remote.head("dev"), "main": remote.head("main")}
    assert heads.default_branch == "main"
    assert len(heads.heads["dev"]) == 40


async def test_every_branch_when_none_is_named_and_tags_only_when_asked(remote):
    heads = await list_remote_heads(remote.url)
    assert set(heads.heads) == {"main", "dev"} and heads.tags == frozenset()
    tagged = await list_remote_heads(remote.url, ["v1"], tags=["v1", "v2"])
    assert tagged.tags == {"v1"} and "v1" not in tagged.heads


async def test_a_pattern_matches_only_the_exact_branch(remote):
    remote.commit("feature/dev")  # the pattern refs/heads/dev matches its tail too
    heads = await list_remote_heads(remote.url, ["dev"])
    assert heads.heads["dev"] == remote.head("dev")
    assert "feature/dev" not in heads.heads


async def test_over_smart_http_with_a_credential(remote):
    async with GitHttpServer(remote.bare.parent, basic_auth=("bot", "s3cret")) as server:
        heads = await list_remote_heads(server.url("app.git"), ["main"],
                                        credential=GitCredential("bot", "s3cret"))
        assert heads.heads == {"main": remote.head("main")} and heads.default_branch == "main"
        assert server.authorized > 0
        with pytest.raises(ContextError, match=r"^cannot list the branches of http://127\.0\.0"
                           r"\.1:\d+/app\.git: authentication failed"):
            await list_remote_heads(server.url("app.git"))


async def test_a_missing_repository_is_one_line(remote, tmp_path):
    with pytest.raises(ContextError) as missing:
        await list_remote_heads((tmp_path / "nothing.git").as_uri())
    assert str(missing.value).endswith(": the repository was not found")
    async with GitHttpServer(remote.bare.parent) as server:
        with pytest.raises(ContextError, match="the repository was not found$"):
            await list_remote_heads(server.url("nothing.git"))


async def test_a_refused_host_is_not_contacted(remote):
    async with GitHttpServer(remote.bare.parent) as server:
        with pytest.raises(ContextError, match="may not fetch .*allowed_context_hosts"):
            await list_remote_heads(server.url("app.git"), hosts=HostPolicy(("git.example",),
                                                                            only_listed=True))
        assert server.requests == []
        listed = HostPolicy(("127.0.0.1",), only_listed=True)
        assert (await list_remote_heads(server.url("app.git"), hosts=listed)).heads


async def test_a_timeout_is_one_line(remote):
    async with GitHttpServer(remote.bare.parent) as server:
        with pytest.raises(ContextError, match=r"^listing the branches of http://\S+ took "
                                               r"longer than 0s$"):
            await list_remote_heads(server.url("app.git"), timeout=0.001)


async def test_output_past_the_limit_is_refused(remote):
    with pytest.raises(ContextError, match="listed more than 10 bytes of branches"):
        await list_remote_heads(remote.url, limit=10)


def test_git_messages_become_causes():
    cause = fetch._ls_remote_cause
    assert cause("fatal: could not read Username for 'https://h': terminal prompts disabled") \
        == "authentication failed (see git_credentials)"
    assert cause("fatal: unable to access 'https://h/': Could not resolve host: h") \
        == "the host name does not resolve"
    assert cause("fatal: unable to access 'http://127.0.0.1:9/r.git/': Failed to connect to "
                 "127.0.0.1 port 9 after 0 ms: Couldn't connect to server") \
        == "the server refused the connection"
    assert cause("fatal: something new") == "fatal: something new"


async def test_checkouts_hold_a_poll_to_the_host_policy_unless_the_config_names_it(
        remote, tmp_path):
    async with GitHttpServer(remote.bare.parent) as server:
        url = server.url("app.git")
        checkouts = Checkouts(tmp_path / "contexts", 1 << 20, HostPolicy.for_contexts(None),
                              trusted=lambda context: context == url + "#main")
        with pytest.raises(ContextError, match="127.0.0.1 is a loopback address"):
            await checkouts.list_heads(url, ["main"], (), [url])  # an API task's context
        assert server.requests == []
        heads = await checkouts.list_heads(url, ["main"], (), [url, url + "#main"])
        assert heads.heads == {"main": remote.head()}
