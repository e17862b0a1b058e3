"""GitLab's REST API v4 (gitlab.com and self-managed): project webhooks and commit statuses, as
docs.gitlab.com/api/project_webhooks and /api/commits ("Set the pipeline status of a commit")
describe them. A project is named by its URL-encoded path (group%2Fsubgroup%2Fproject)."""
from __future__ import annotations

from urllib.parse import quote

from basewatch.scm.api import ScmApi
from basewatch.scm.hosts import Repository
from basewatch.scm.provider import (CommitStatus, HookRegistration, Refusals,
                                     created_hook_id)

HOOK_SCOPES = "the api scope, and the Maintainer role (or higher) on the project"
STATUS_SCOPES = "the api scope, and the Developer role (or higher) on the project"
# GitLab has no error state: a run that errs has failed.
STATES = {"pending": "pending", "running": "running", "success": "success",
          "failure": "failed", "error": "failed", "canceled": "canceled"}


class GitLab:
    def __init__(self, api: ScmApi, repository: Repository, token: str,
                 token_name: str = "the task's git_access_token_env"):
        self.repository = repository
        self._api = api
        self._headers = {"Accept": "application/json", "PRIVATE-TOKEN": token}
        self._base = f"{repository.api_url}/projects/{quote(repository.path, safe='')}"
        self._hooks = Refusals(repository, token_name, HOOK_SCOPES)
        self._statuses = Refusals(repository, token_name, STATUS_SCOPES)

    async def register_webhook(self, url: str, secret: str) -> HookRegistration:
        # Only what basewatch reacts to: pushes to branches and merge requests; tag pushes are
        # another event (tag_push_events), left off.
        body = {"url": url, "token": secret, "push_events": True,
                "merge_requests_events": True, "tag_push_events": False,
                "enable_ssl_verification": True}
        existing = await self._hooks_for(url)
        if not existing:
            response = await self._api.request("POST", f"{self._base}/hooks", self._headers,
                                               self.repository, body)
            if response.status != 201:
                raise self._hooks.error(response, "create webhooks on")
            return HookRegistration(created_hook_id(response.json(), self.repository), True)
        first, *duplicates = existing
        response = await self._api.request("PUT", f"{self._base}/hooks/{first}", self._headers,
                                           self.repository, body)
        if response.status != 200:
            raise self._hooks.error(response, "update webhooks on")
        for hook_id in duplicates:  # with another secret token: every delivery would be refused
            await self.delete_webhook(hook_id)
        return HookRegistration(first, False)

    async def delete_webhook(self, hook_id: int) -> bool:
        response = await self._api.request("DELETE", f"{self._base}/hooks/{int(hook_id)}",
                                           self._headers, self.repository)
        if response.status in (200, 204):  # older GitLab answers 200 with the hook
            return True
        if response.status == 404 and await self._project_visible():
            return False
        raise self._hooks.error(response, "delete webhooks on")

    async def post_status(self, sha: str, status: CommitStatus) -> None:
        body = {"state": STATES[status.state], "name": status.context,
                "description": status.short_description()}
        if status.target_url:
            body["target_url"] = status.target_url
        response = await self._api.request("POST", f"{self._base}/statuses/{quote(sha)}",
                                           self._headers, self.repository, body)
        if response.status == 201:
            return
        # The same state twice ("Cannot transition status via :run from :running"): the
        # commit already shows what we meant to say.
        if response.status == 400 and "Cannot transition status" in response.message():
            return
        raise self._statuses.error(response, "set commit statuses on")

    async def _hooks_for(self, url: str) -> list[int]:
        hooks = await self._api.pages(f"{self._base}/hooks?per_page=100", self._headers,
                                      self.repository,
                                      lambda r: self._hooks.error(r, "create webhooks on"))
        return [hook["id"] for hook in hooks
                if isinstance(hook, dict) and isinstance(hook.get("id"), int)
                and hook.get("url") == url]

    async def _project_visible(self) -> bool:
        """A 404 on a hook means it is gone only if the project itself is there."""
        response = await self._api.request("GET", self._base, self._headers, self.repository)
        return response.status == 200
