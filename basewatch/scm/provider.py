"""What every git host's API client does for basewatch, and the plain data it takes."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal, Protocol

from basewatch.redaction import KNOWN
from basewatch.scm.api import ApiResponse
from basewatch.scm.hosts import Repository, ScmError

# A run's state as a commit shows it; each provider maps it to its own words.
StatusState = Literal["pending", "running", "success", "failure", "error", "canceled"]
# GitHub caps a status's description at 140 characters (422 beyond); the others take it too.
MAX_DESCRIPTION = 140


def new_webhook_secret() -> str:
    """A secret for a webhook basewatch registers: 256 bits, URL-safe."""
    secret = secrets.token_urlsafe(32)
    KNOWN.add(secret)  # never in the daemon's log
    return secret


@dataclass(frozen=True)
class CommitStatus:
    state: StatusState
    context: str  # basewatch/<task>: one status per task on a commit, updated as it goes
    description: str = ""
    target_url: str | None = None  # the run's log on the API

    def short_description(self) -> str:
        text = " ".join(self.description.split())
        return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 1] + "…"


@dataclass(frozen=True)
class HookRegistration:
    hook_id: int
    created: bool  # False: a hook for the same URL was there and now has our settings


class GitProvider(Protocol):
    """One repository on one git host, reached with one token."""

    repository: Repository

    async def register_webhook(self, url: str, secret: str) -> HookRegistration:
        """A push and pull-request webhook to `url`, signed with `secret`: created, or the one
        already there for `url` updated (never a second one)."""

    async def delete_webhook(self, hook_id: int) -> bool:
        """Remove the hook; False when it was gone already."""

    async def post_status(self, sha: str, status: CommitStatus) -> None:
        """Set the commit's status for `status.context`."""


@dataclass(frozen=True)
class Refusals:
    """How to word what a provider refused, for one kind of request."""

    repository: Repository
    token_name: str  # where the token came from, never the token: GIT_TOKEN
    scopes: str  # what the token needs for it, in the provider's words

    def error(self, response: ApiResponse, doing: str) -> ScmError:
        """`doing`: "create webhooks on", "set commit statuses on"..."""
        repo, status = self.repository, response.status
        said = response.message()
        detail = f": {said}" if said else ""
        if status == 401:
            return ScmError(f"{repo.host} refused the token in {self.token_name} (401"
                            f"{detail}): it is wrong, expired or revoked")
        if status == 403:
            return ScmError(f"the token in {self.token_name} cannot {doing} {repo.path} (403"
                            f"{detail}): it needs {self.scopes}")
        if status == 404:
            return ScmError(f"{repo.host} has no repository {repo.path}, or the token in "
                            f"{self.token_name} cannot see it (404{detail}): to {doing} it "
                            f"the token needs {self.scopes}")
        return ScmError(f"{repo}: the API refused to {doing} it ({status} "
                        f"{response.reason}{detail})")


async def post_status_quietly(provider: GitProvider, sha: str, status: CommitStatus
                              ) -> str | None:
    """Post `status`; the error's one line instead of raising it, for the run's log: a status
    that cannot be posted never fails the build it reports on."""
    try:
        await provider.post_status(sha, status)
    except ScmError as exc:
        return f"could not set the commit status {status.context} on {sha[:12]}: {exc}"
    return None


def created_hook_id(body, repository: Repository) -> int:
    """The id of the webhook an API just created, from its response body."""
    if isinstance(body, dict) and isinstance(body.get("id"), int):
        return body["id"]
    raise ScmError(f"{repository}: the API created a webhook but sent no id for it")
