"""A stand-in for GitHub's REST API (repository webhooks and commit statuses), served by aiohttp
in the test's loop, answering as docs.github.com describes: 201 on create with the hook, 422 for a
hook whose URL is already there, 204 on delete, 401 without a good token, 404 for a repository it
does not have (or that the token may not see), 403 for a token without the scope.

    async with GitHubApi(tokens={"t": {"admin:repo_hook", "repo:status"}}) as github:
        ... github.api_url ... github.received ...

Scopes are the classic token's: admin:repo_hook for hooks, repo:status for statuses; "all"
grants both. `prefix="/api/v3"` serves it as GitHub Enterprise Server does.
"""
from __future__ import annotations

import re

from aiohttp import web

from tests.support.scm_standin import ScmStandIn

STATES = ("error", "failure", "pending", "success")
_SHA = re.compile(r"^[0-9a-f]{40}$")


class GitHubApi(ScmStandIn):
    def __init__(self, *args, prefix: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.prefix = prefix

    def add_routes(self, router: web.UrlDispatcher) -> None:
        repo = self.prefix + "/repos/{owner}/{repo}"
        router.add_get(repo, self._get_repository)
        router.add_get(repo + "/hooks", self._list_hooks)
        router.add_post(repo + "/hooks", self._create_hook)
        router.add_patch(repo + "/hooks/{hook_id}", self._update_hook)
        router.add_delete(repo + "/hooks/{hook_id}", self._delete_hook)
        router.add_post(repo + "/statuses/{sha}", self._create_status)

    # ------------------------------------------------------------------ checks

    def _authorized(self, request: web.Request, scope: str):
        """(repository state, None) or (None, the error response)."""
        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        scopes = self.scopes(token) if scheme.lower() in ("bearer", "token") else None
        if scopes is None:
            return None, _error(401, "Bad credentials")
        state = self.repository(f"{request.match_info['owner']}/{request.match_info['repo']}")
        if state is None:
            return None, _error(404, "Not Found")
        if scope and scope not in scopes and "all" not in scopes:
            return None, _error(403, "Resource not accessible by personal access token")
        return state, None

    def _hook_view(self, request: web.Request, hook: dict) -> dict:
        base = f"{self.api_url}/repos/{request.match_info['owner']}/{request.match_info['repo']}"
        config = {k: v for k, v in hook["config"].items() if k != "secret"}
        if "secret" in hook["config"]:
            config["secret"] = "********"
        return {"type": "Repository", "id": hook["id"], "name": "web", "active": hook["active"],
                "events": hook["events"], "config": config,
                "updated_at": "2026-12-01T00:00:00Z", "created_at": "2026-12-01T00:00:00Z",
                "url": f"{base}/hooks/{hook['id']}", "test_url": f"{base}/hooks/{hook['id']}/test",
                "ping_url": f"{base}/hooks/{hook['id']}/pings",
                "deliveries_url": f"{base}/hooks/{hook['id']}/deliveries",
                "last_response": {"code": None, "status": "unused", "message": None}}

    # ------------------------------------------------------------------ handlers

    async def _get_repository(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "")
        if refused:
            return refused
        owner, name = request.match_info["owner"], request.match_info["repo"]
        return web.json_response({"id": 1296269, "name": name, "full_name": f"{owner}/{name}",
                                  "private": False})

    async def _list_hooks(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "admin:repo_hook")
        if refused:
            return refused
        per_page = min(int(request.query.get("per_page", "30")), 100)
        page = int(request.query.get("page", "1"))
        hooks = sorted(state.hooks.values(), key=lambda h: h["id"])
        chosen = hooks[(page - 1) * per_page:page * per_page]
        headers = {}
        if page * per_page < len(hooks):
            url = request.url.update_query(per_page=per_page, page=page + 1)
            headers["Link"] = f'<{url}>; rel="next"'
        return web.json_response([self._hook_view(request, h) for h in chosen], headers=headers)

    async def _create_hook(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "admin:repo_hook")
        if refused:
            return refused
        body = await request.json()
        config = body.get("config") if isinstance(body, dict) else None
        if not isinstance(config, dict) or not config.get("url") or \
                body.get("name", "web") != "web":
            return _error(422, "Validation Failed",
                          [{"resource": "Hook", "code": "custom", "message": "Config is invalid"}])
        events = body.get("events", ["push"])
        for hook in state.hooks.values():
            if hook["config"].get("url") == config["url"] and set(hook["events"]) & set(events):
                return _error(422, "Validation Failed",
                              [{"resource": "Hook", "code": "custom",
                                "message": "Hook already exists on this repository"}])
        hook = {"id": self.new_id(), "active": body.get("active", True), "events": events,
                "config": dict(config)}
        state.hooks[hook["id"]] = hook
        view = self._hook_view(request, hook)
        return web.json_response(view, status=201, headers={"Location": view["url"]})

    async def _update_hook(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "admin:repo_hook")
        if refused:
            return refused
        hook = state.hooks.get(int(request.match_info["hook_id"]))
        if hook is None:
            return _error(404, "Not Found")
        body = await request.json()
        if "config" in body:
            hook["config"] = dict(body["config"])
        for key in ("events", "active"):
            if key in body:
                hook[key] = body[key]
        return web.json_response(self._hook_view(request, hook))

    async def _delete_hook(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "admin:repo_hook")
        if refused:
            return refused
        if state.hooks.pop(int(request.match_info["hook_id"]), None) is None:
            return _error(404, "Not Found")
        return web.Response(status=204)

    async def _create_status(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "repo:status")
        if refused:
            return refused
        body = await request.json()
        sha = request.match_info["sha"]
        if not _SHA.match(sha):
            return _error(422, f"No commit found for SHA: {sha}")
        if not isinstance(body, dict) or body.get("state") not in STATES:
            return _error(422, "Validation Failed",
                          [{"resource": "Status", "field": "state", "code": "custom",
                            "message": "state is not included in the list"}])
        if len(body.get("description") or "") > 140:
            return _error(422, "Validation Failed",
                          [{"resource": "Status", "code": "custom",
                            "message": "description is too long (maximum is 140 characters)"}])
        status = {"id": self.new_id(), "sha": sha, "state": body["state"],
                  "description": body.get("description"), "target_url": body.get("target_url"),
                  "context": body.get("context", "default")}
        state.statuses.append(status)
        return web.json_response(status, status=201)


def _error(status: int, message: str, errors: list | None = None) -> web.Response:
    body = {"message": message, "documentation_url": "https://docs.github.com/rest",
            "status": str(status)}
    if errors:
        body["errors"] = errors
    return web.json_response(body, status=status)
