"""Which provider and API a repository URL names."""
from __future__ import annotations

import pydantic
import pytest

from basewatch.netpolicy import AddressRefused
from basewatch.scm.hosts import GitHostSettings, Repository, ScmError, api_policy, locate
from basewatch.scm.manual import webhook_instructions

GHE = GitHostSettings(host="github.example.com", provider="github")
GITLAB = GitHostSettings(host="gitlab.example.com:8443", provider="gitlab",
                         api_url="https://gitlab.example.com:8443/gitlab/api/v4/")
FORGEJO = GitHostSettings(host="git.example.org", provider="forgejo")


@pytest.mark.parametrize("url", [
    "https://github.com/org/repo.git", "https://github.com/org/repo.git#main:docker",
    "git@github.com:org/repo.git", "ssh://git@github.com/org/repo.git",
    "https://GitHub.com/org/repo", "https://github.com/org/repo/"])
def test_github_com_is_known_and_its_api_is_api_github_com(url):
    assert locate(url) == Repository("github", "https://api.github.com", "org/repo",
                                     "github.com")


def test_the_other_known_hosts():
    assert locate("https://gitlab.com/group/sub/project.git") == Repository(
        "gitlab", "https://gitlab.com/api/v4", "group/sub/project", "gitlab.com")
    assert locate("https://codeberg.org/owner/repo.git").provider == "gitea"


def test_configured_hosts_default_to_each_providers_api_path():
    assert GHE.api_url == "https://github.example.com/api/v3"
    assert GitHostSettings(host="gl.example.com", provider="gitlab").api_url == \
        "https://gl.example.com/api/v4"
    assert FORGEJO.api_url == "https://git.example.org/api/v1"
    hosts = [GHE, GITLAB, FORGEJO]
    assert locate("https://github.example.com/org/repo.git", hosts) == Repository(
        "github", "https://github.example.com/api/v3", "org/repo", "github.example.com")
    assert locate("git@git.example.org:owner/repo.git", hosts) == Repository(
        "gitea", "https://git.example.org/api/v1", "owner/repo", "git.example.org")


def test_gitlab_under_a_path_names_projects_without_it():
    repo = locate("https://gitlab.example.com:8443/gitlab/group/sub/project.git", [GITLAB])
    assert repo == Repository("gitlab", "https://gitlab.example.com:8443/gitlab/api/v4",
                              "group/sub/project", "gitlab.example.com:8443")


def test_a_configured_host_wins_over_a_known_one():
    own = GitHostSettings(host="github.com", provider="github", api_url="http://127.0.0.1:9/")
    assert locate("https://github.com/o/r.git", [own]).api_url == "http://127.0.0.1:9"


@pytest.mark.parametrize("url, says", [
    ("https://git.unknown.example/o/r.git", "add it to the config's git_hosts"),
    ("https://github.com/org.git", "does not name a repository as github.com/owner/repository"),
    ("https://github.com/a/b/c.git", "owner/repository"),
    ("https://github.com/a/../b.git", "owner/repository"),
    ("file:///srv/git/repo.git", "not an http(s) or ssh git URL"),
    ("/srv/folder", "not an http(s) or ssh git URL"),
])
def test_what_is_not_a_repository_on_a_known_host_is_refused_saying_why(url, says):
    with pytest.raises(ScmError, match=says.replace("(", r"\(").replace(")", r"\)")):
        locate(url, [GHE])


def test_credentials_in_a_url_stay_out_of_the_message():
    with pytest.raises(ScmError) as caught:
        locate("https://user:hunter2@github.com/just-one.git")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("fields", [
    {"host": "https://github.example.com", "provider": "github"},
    {"host": "github.example.com", "provider": "bitbucket"},
    {"host": "g.example.com", "provider": "gitea", "api_url": "ftp://g.example.com/api"},
    {"host": "g.example.com", "provider": "gitea", "api_url": "https://u:p@g.example.com/api"},
    {"host": "g.example.com", "provider": "gitea", "extra": 1},
])
def test_the_config_model_refuses_what_cannot_work(fields):
    with pytest.raises(pydantic.ValidationError):
        GitHostSettings(**fields)


def test_the_api_policy_lists_the_configured_servers_apis_only():
    policy = api_policy([GHE, GITLAB, GitHostSettings(host="10.0.0.5", provider="gitea",
                                                      api_url="http://10.0.0.5:3000/api/v1")])
    assert policy.listed == ("github.example.com", "gitlab.example.com", "10.0.0.5")
    policy.check_url("http://10.0.0.5:3000/api/v1/repos/o/r/hooks")
    with pytest.raises(AddressRefused, match="only for hosts listed in its git_hosts"):
        policy.check_url("http://10.0.0.6/api/v1")
    assert api_policy().listed == ()


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea", "forgejo"])
def test_instructions_for_pasting_a_webhook_name_the_url_secret_and_events(provider):
    lines = webhook_instructions(provider, "https://bw.example.com/webhooks/x", "s3cret")
    text = "\n".join(lines)
    assert "https://bw.example.com/webhooks/x" in text and "s3cret" in text
    assert ("Pull request" in text or "Merge request" in text) and "Push" in text
