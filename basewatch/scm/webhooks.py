"""The daemon's webhook on a task's repository, from the task's context URL: which provider,
which of the daemon's receivers, a new secret, and the hook registered or removed."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from basewatch.scm.api import ScmApi
from basewatch.scm.hosts import GitHostSettings, locate
from basewatch.scm.provider import new_webhook_secret
from basewatch.scm.providers import provider_for

# The daemon's receiver per API family: Forgejo's deliveries are Gitea's.
RECEIVERS = {"github": "/webhooks/github", "gitlab": "/webhooks/gitlab",
             "gitea": "/webhooks/gitea"}


def webhook_url(public_url: str, provider: str) -> str:
    """Where `provider` delivers to the daemon reachable at `public_url` (https://bw.example.com)."""
    return public_url.rstrip("/") + RECEIVERS["gitea" if provider == "forgejo" else provider]


def status_context(task_name: str) -> str:
    """A task's commit status name: one per task on a commit."""
    return f"basewatch/{task_name}"


@dataclass(frozen=True)
class RegisteredWebhook:
    provider: str  # github, gitlab, gitea
    repository: str  # host/path, for messages
    hook_id: int
    url: str
    secret: str = field(repr=False)  # what deliveries are signed with: keep it, show it never
    created: bool = True


async def register(api: ScmApi, context_url: str, git_hosts: Sequence[GitHostSettings],
                   token: str, token_name: str, public_url: str) -> RegisteredWebhook:
    """Register (or update) the daemon's webhook on the context's repository, with a new
    secret; ScmError when the host is unknown or its API refuses."""
    repository = locate(context_url, tuple(git_hosts))
    url = webhook_url(public_url, repository.provider)
    secret = new_webhook_secret()
    registration = await provider_for(repository, api, token, token_name).register_webhook(
        url, secret)
    return RegisteredWebhook(repository.provider, str(repository), registration.hook_id, url,
                             secret, registration.created)


async def unregister(api: ScmApi, context_url: str, git_hosts: Sequence[GitHostSettings],
                     token: str, token_name: str, hook_id: int) -> bool:
    """Remove a hook `register` made; False when it was gone already."""
    repository = locate(context_url, tuple(git_hosts))
    return await provider_for(repository, api, token, token_name).delete_webhook(hook_id)
