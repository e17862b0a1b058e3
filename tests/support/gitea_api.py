"""A stand-in for Gitea's and Forgejo's REST API v1 (repository webhooks and commit statuses),
served by aiohttp in the test's loop, answering as their swagger describes: `Authorization:
token ...`, 201 on create, 204 on delete, 401 without a good token, 404 for an unknown
repository, 403 for a token without write:repository, 422 for a hook option it refuses.
Editing a hook leaves its secret as it was, as Gitea does.

    async with GiteaApi(tokens={"t": {"write:repository"}}) as gitea:
        ... gitea.api_url (ends in /api/v1) ... gitea.received ...
"""
from __future__ import annotations

import re

from aiohttp import web

from tests.support.scm_standin import ScmStandIn

STATES = ("pending", "success", "error", "failure", "warning")
HOOK_TYPES = ("dingtalk", "discord", "gitea", "gogs", "msteams", "slack", "telegram",
              "feishu", "wechatwork", "packagist", "forgejo")
_SHA = re.compile(r"^[0-9a-f]{40}$")


class GiteaApi(ScmStandIn):
    prefix = "/api/v1"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        repo = self.prefix + "/repos/{owner}/{repo}"
        router.add_get(repo, self._get_repository)
        router.add_get(repo + "/hooks", self._list_hooks)
        router.add_post(repo + "/hooks", self._create_hook)
        router.add_patch(repo + "/hooks/{hook_id}", self._update_hook)
        router.add_delete(repo + "/hooks/{hook_id}", self._delete_hook)
        router.add_post(repo + "/statuses/{sha}", self._create_status)

    def _authorized(self, request: web.Request, scope: str | None):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        scopes = self.scopes(token) if scheme.lower() in ("token", "bearer") else None
        if scopes is None:
            return None, _error(401, "token is required")
        state = self.repository(f"{request.match_info['owner']}/{request.match_info['repo']}")
        if state is None:
            return None, web.json_response({"errors": ["repository does not exist"],
                                            "message": "The target couldn't be found.",
                                            "url": self.api_url + "/swagger"}, status=404)
        if scope and scope not in scopes and "all" not in scopes:
            return None, _error(403, "token does not have at least one of required scope(s): "
                                     f"[{scope}]")
        return state, None

    def _view(self, hook: dict) -> dict:
        return {"id": hook["id"], "type": hook["type"], "branch_filter": hook["branch_filter"],
                "config": {"content_type": hook["content_type"], "url": hook["url"]},
                "events": hook["events"], "authorization_header": "",
                "active": hook["active"], "updated_at": "2026-12-01T00:00:00Z",
                "created_at": "2026-12-01T00:00:00Z"}

    async def _get_repository(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, None)
        if refused:
            return refused
        owner, name = request.match_info["owner"], request.match_info["repo"]
        return web.json_response({"id": 1, "full_name": f"{owner}/{name}"})

    async def _list_hooks(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "write:repository")
        if refused:
            return refused
        limit = min(int(request.query.get("limit", "30")), 50)
        page = int(request.query.get("page", "1"))
        hooks = sorted(state.hooks.values(), key=lambda h: h["id"])
        headers = {"X-Total-Count": str(len(hooks))}
        if page * limit < len(hooks):
            headers["Link"] = f'<{request.url.update_query(limit=limit, page=page + 1)}>; ' \
                              'rel="next"'
        chosen = hooks[(page - 1) * limit:page * limit]
        return web.json_response([self._view(h) for h in chosen], headers=headers)

    async def _create_hook(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "write:repository")
        if refused:
            return refused
        body = await request.json()
        config = body.get("config") if isinstance(body, dict) else None
        if body.get("type") not in HOOK_TYPES:
            return _error(422, "Invalid hook type")
        if not isinstance(config, dict) or not config.get("url") or \
                config.get("content_type") not in ("json", "form"):
            return _error(422, "Missing config option: content_type or url")
        hook = {"id": self.new_id(), "type": body["type"], "url": config["url"],
                "content_type": config["content_type"], "secret": config.get("secret", ""),
                "events": body.get("events") or ["push"],
                "branch_filter": body.get("branch_filter", ""),
                "active": bool(body.get("active", False))}
        state.hooks[hook["id"]] = hook
        return web.json_response(self._view(hook), status=201)

    async def _update_hook(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "write:repository")
        if refused:
            return refused
        hook = state.hooks.get(int(request.match_info["hook_id"]))
        if hook is None:
            return _error(404, "The target couldn't be found.")
        body = await request.json()
        config = body.get("config") or {}
        # As Gitea's editHook: URL and content type from config (not the secret), events and
        # branch filter reset to what was sent.
        hook.update({k: config[k] for k in ("url", "content_type") if k in config})
        hook["events"] = body.get("events") or ["push"]
        hook["branch_filter"] = body.get("branch_filter", "")
        if "active" in body:
            hook["active"] = bool(body["active"])
        return web.json_response(self._view(hook))

    async def _delete_hook(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "write:repository")
        if refused:
            return refused
        if state.hooks.pop(int(request.match_info["hook_id"]), None) is None:
            return _error(404, "The target couldn't be found.")
        return web.Response(status=204)

    async def _create_status(self, request: web.Request) -> web.Response:
        state, refused = self._authorized(request, "write:repository")
        if refused:
            return refused
        body = await request.json()
        sha = request.match_info["sha"]
        if not _SHA.match(sha):
            return _error(404, "The target couldn't be found.")
        if not isinstance(body, dict) or body.get("state") not in STATES:
            return _error(422, "invalid state")
        status = {"id": self.new_id(), "status": body["state"], "context": body.get("context"),
                  "description": body.get("description"), "target_url": body.get("target_url"),
                  "sha": sha}
        state.statuses.append(status)
        return web.json_response(status, status=201)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message, "url": "/api/swagger"}, status=status)
