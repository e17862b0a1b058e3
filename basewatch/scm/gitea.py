"""Gitea's and Forgejo's REST API v1 (one API): repository webhooks and commit statuses, as
their swagger (/api/swagger) describes them. `Authorization: token ...`."""
from __future__ import annotations

from basewatch.scm.github import GitHub
from basewatch.scm.provider import HookRegistration, created_hook_id

# "pull_request" subscribes to the whole pull-request family, synchronize included.
EVENTS = ["push", "pull_request"]
HOOK_SCOPES = "the write:repository scope, and admin access to the repository"
STATUS_SCOPES = "the write:repository scope, and write access to the repository"
# Gitea has no running or canceled status: a running build is pending, a canceled one an error.
STATES = {"pending": "pending", "running": "pending", "success": "success",
          "failure": "failure", "error": "error", "canceled": "error"}


class Gitea(GitHub):
    """Gitea's API follows GitHub's for listing and deleting hooks and for commit statuses; it
    differs in its token header, its paging, its scopes and in how a hook is created."""

    HOOK_SCOPES = HOOK_SCOPES
    STATUS_SCOPES = STATUS_SCOPES
    STATES = STATES
    HOOKS_PAGE = "page=1&limit=50"

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"Accept": "application/json", "Authorization": f"token {token}"}

    async def register_webhook(self, url: str, secret: str) -> HookRegistration:
        """Gitea's hook edit keeps the secret it was created with (EditHookOption changes only
        the URL, content type, events and state), so a hook for `url` already there is
        replaced: deleted, then created again with `secret`."""
        existing = await self._hooks_for(url)
        for hook_id in existing:
            await self.delete_webhook(hook_id)
        body = {"type": "gitea", "active": True, "events": EVENTS, "branch_filter": "*",
                "config": {"url": url, "content_type": "json", "secret": secret}}
        response = await self._api.request("POST", f"{self._base}/hooks", self._headers,
                                           self.repository, body)
        if response.status != 201:
            raise self._hooks.error(response, "create webhooks on")
        return HookRegistration(created_hook_id(response.json(), self.repository),
                                not existing)
