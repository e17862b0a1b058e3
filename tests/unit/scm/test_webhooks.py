"""From a task's context URL to its repository's webhook, on each provider's stand-in."""
from __future__ import annotations

import pytest

from basewatch.scm.hosts import GitHostSettings, ScmError
from basewatch.scm.webhooks import register, status_context, unregister, webhook_url
from tests.support.gitea_api import GiteaApi
from tests.support.github_api import GitHubApi
from tests.support.gitlab_api import GitLabApi

PUBLIC = "https://bw.example.com/"


def test_each_provider_delivers_to_its_receiver():
    assert webhook_url(PUBLIC, "github") == "https://bw.example.com/webhooks/github"
    assert webhook_url(PUBLIC, "gitlab") == "https://bw.example.com/webhooks/gitlab"
    assert webhook_url(PUBLIC, "forgejo") == "https://bw.example.com/webhooks/gitea"
    assert status_context("web") == "basewatch/web"


@pytest.mark.parametrize("stand_in, provider, path", [
    (GitHubApi, "github", "org/repo"), (GitLabApi, "gitlab", "org/repo"),
    (GiteaApi, "forgejo", "org/repo")])
async def test_register_then_unregister_from_the_context_url(api, stand_in, provider, path):
    async with stand_in(tokens={"tok": {"all"}}) as server:
        host = f"127.0.0.1:{server.port}"
        hosts = [GitHostSettings(host=host, provider=provider, api_url=server.api_url)]
        context = f"http://{host}/{path}.git#main:docker"
        hook = await register(api, context, hosts, "tok", "GIT_TOKEN", PUBLIC)
        assert hook.url == webhook_url(PUBLIC, provider) and hook.created
        assert len(hook.secret) == 43 and hook.secret not in repr(hook)
        [stored] = server.repositories[path].hooks.values()
        assert stored["id"] == hook.hook_id
        again = await register(api, context, hosts, "tok", "GIT_TOKEN", PUBLIC)
        assert not again.created and again.secret != hook.secret
        assert len(server.repositories[path].hooks) == 1
        assert await unregister(api, context, hosts, "tok", "GIT_TOKEN", again.hook_id)
        assert server.repositories[path].hooks == {}


async def test_a_context_on_an_unknown_host_is_refused_before_any_request(api):
    with pytest.raises(ScmError, match="add it to the config's git_hosts"):
        await register(api, "https://git.corp.example/o/r.git", [], "tok", "GIT_TOKEN", PUBLIC)
