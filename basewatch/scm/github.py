"""GitHub's REST API (github.com and GitHub Enterprise Server): repository webhooks and commit
statuses, as docs.github.com/rest/repos/webhooks and /rest/commits/statuses describe them."""
from __future__ import annotations

from urllib.parse import quote

from basewatch.scm.api import ScmApi
from basewatch.scm.hosts import Repository
from basewatch.scm.provider import (CommitStatus, HookRegistration, Refusals,
                                     created_hook_id)

API_VERSION = "2022-11-28"
EVENTS = ["push", "pull_request"]
HOOK_SCOPES = ("Webhooks: read and write (fine-grained token) or admin:repo_hook (classic "
               "token), and admin access to the repository")
STATUS_SCOPES = "Commit statuses: read and write (fine-grained token) or repo:status (classic)"
# GitHub has no running or canceled status: a running build is pending, a canceled one an error.
STATES = {"pending": "pending", "running": "pending", "success": "success",
          "failure": "failure", "error": "error", "canceled": "error"}


class GitHub:
    # What a provider that follows GitHub's API (Gitea's does, for hooks and statuses) says
    # differently: the scopes its refusals name, its states, how its hook list pages.
    HOOK_SCOPES = HOOK_SCOPES
    STATUS_SCOPES = STATUS_SCOPES
    STATES = STATES
    HOOKS_PAGE = "per_page=100"

    def __init__(self, api: ScmApi, repository: Repository, token: str,
                 token_name: str = "the task's git_access_token_env"):
        self.repository = repository
        self._api = api
        self._headers = self.headers(token)
        owner, _, name = repository.path.partition("/")
        self._base = f"{repository.api_url}/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
        self._hooks = Refusals(repository, token_name, self.HOOK_SCOPES)
        self._statuses = Refusals(repository, token_name, self.STATUS_SCOPES)

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                "Authorization": f"Bearer {token}"}

    async def register_webhook(self, url: str, secret: str) -> HookRegistration:
        body = {"name": "web", "active": True, "events": EVENTS,
                "config": {"url": url, "content_type": "json", "secret": secret,
                           "insecure_ssl": "0"}}
        existing = await self._hooks_for(url)
        if not existing:
            response = await self._api.request("POST", f"{self._base}/hooks", self._headers,
                                               self.repository, body)
            if response.status == 201:
                return HookRegistration(created_hook_id(response.json(), self.repository), True)
            # 422 "Hook already exists": one appeared since the list (or a retried POST made
            # it); update that one instead.
            if response.status != 422 or not (existing := await self._hooks_for(url)):
                raise self._hooks.error(response, "create webhooks on")
        first, *duplicates = existing
        response = await self._api.request("PATCH", f"{self._base}/hooks/{first}",
                                           self._headers, self.repository, body)
        if response.status != 200:
            raise self._hooks.error(response, "update webhooks on")
        for hook_id in duplicates:  # signed with another secret: every delivery would fail
            await self.delete_webhook(hook_id)
        return HookRegistration(first, False)

    async def delete_webhook(self, hook_id: int) -> bool:
        response = await self._api.request("DELETE", f"{self._base}/hooks/{int(hook_id)}",
                                           self._headers, self.repository)
        if response.status == 204:
            return True
        if response.status == 404 and await self._repository_visible():
            return False
        raise self._hooks.error(response, "delete webhooks on")

    async def post_status(self, sha: str, status: CommitStatus) -> None:
        body = {"state": self.STATES[status.state], "context": status.context,
                "description": status.short_description()}
        if status.target_url:
            body["target_url"] = status.target_url
        response = await self._api.request("POST", f"{self._base}/statuses/{quote(sha)}",
                                           self._headers, self.repository, body)
        if response.status != 201:
            raise self._statuses.error(response, "set commit statuses on")

    async def _hooks_for(self, url: str) -> list[int]:
        hooks = await self._api.pages(f"{self._base}/hooks?{self.HOOKS_PAGE}", self._headers,
                                      self.repository,
                                      lambda r: self._hooks.error(r, "create webhooks on"))
        return [hook["id"] for hook in hooks
                if isinstance(hook, dict) and isinstance(hook.get("id"), int)
                and isinstance(hook.get("config"), dict) and hook["config"].get("url") == url]

    async def _repository_visible(self) -> bool:
        """A 404 on a hook means it is gone only if the repository itself is there."""
        response = await self._api.request("GET", self._base, self._headers, self.repository)
        return response.status == 200
