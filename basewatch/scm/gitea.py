"""Gitea's and Forgejo's REST API v1 (one API): repository webhooks and commit statuses, as
their swagger (/api/swagger) describes them. `Authorization: token ...`."""
from __future__ import annotations

from urllib.parse import quote

from basewatch.scm.api import ScmApi
from basewatch.scm.hosts import Repository, ScmError
from basewatch.scm.provider import CommitStatus, HookRegistration, Refusals

# "pull_request" subscribes to the whole pull-request family, synchronize included.
EVENTS = ["push", "pull_request"]
HOOK_SCOPES = "the write:repository scope, and admin access to the repository"
STATUS_SCOPES = "the write:repository scope, and write access to the repository"
# Gitea has no running or canceled status: a running build is pending, a canceled one an error.
STATES = {"pending": "pending", "running": "pending", "success": "success",
          "failure": "failure", "error": "error", "canceled": "error"}


class Gitea:
    def __init__(self, api: ScmApi, repository: Repository, token: str,
                 token_name: str = "the task's git_access_token_env"):
        self.repository = repository
        self._api = api
        self._headers = {"Accept": "application/json", "Authorization": f"token {token}"}
        owner, _, name = repository.path.partition("/")
        self._base = f"{repository.api_url}/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
        self._hooks = Refusals(repository, token_name, HOOK_SCOPES)
        self._statuses = Refusals(repository, token_name, STATUS_SCOPES)

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
        created = response.json()
        if not (isinstance(created, dict) and isinstance(created.get("id"), int)):
            raise ScmError(f"{self.repository}: the API created a webhook but sent no id for it")
        return HookRegistration(created["id"], not existing)

    async def delete_webhook(self, hook_id: int) -> bool:
        response = await self._api.request("DELETE", f"{self._base}/hooks/{int(hook_id)}",
                                           self._headers, self.repository)
        if response.status == 204:
            return True
        if response.status == 404 and await self._repository_visible():
            return False
        raise self._hooks.error(response, "delete webhooks on")

    async def post_status(self, sha: str, status: CommitStatus) -> None:
        body = {"state": STATES[status.state], "context": status.context,
                "description": status.short_description()}
        if status.target_url:
            body["target_url"] = status.target_url
        response = await self._api.request("POST", f"{self._base}/statuses/{quote(sha)}",
                                           self._headers, self.repository, body)
        if response.status != 201:
            raise self._statuses.error(response, "set commit statuses on")

    async def _hooks_for(self, url: str) -> list[int]:
        hooks = await self._api.pages(f"{self._base}/hooks?page=1&limit=50", self._headers,
                                      self.repository,
                                      lambda r: self._hooks.error(r, "create webhooks on"))
        return [hook["id"] for hook in hooks
                if isinstance(hook, dict) and isinstance(hook.get("id"), int)
                and isinstance(hook.get("config"), dict) and hook["config"].get("url") == url]

    async def _repository_visible(self) -> bool:
        """A 404 on a hook means it is gone only if the repository itself is there."""
        response = await self._api.request("GET", self._base, self._headers, self.repository)
        return response.status == 200
