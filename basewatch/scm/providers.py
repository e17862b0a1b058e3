"""The API client for a repository's provider."""
from __future__ import annotations

from basewatch.scm.api import ScmApi
from basewatch.scm.gitea import Gitea
from basewatch.scm.github import GitHub
from basewatch.scm.gitlab import GitLab
from basewatch.scm.hosts import Repository
from basewatch.scm.provider import GitProvider

_CLIENTS = {"github": GitHub, "gitlab": GitLab, "gitea": Gitea}


def provider_for(repository: Repository, api: ScmApi, token: str,
                 token_name: str = "the task's git_access_token_env") -> GitProvider:
    """`token_name` says where the token came from (an environment variable's name), for
    messages; the token itself is never in one."""
    return _CLIENTS[repository.provider](api, repository, token, token_name)
