"""A stand-in for GitLab's REST API v4 (project webhooks and commit statuses), served by aiohttp
in the test's loop, answering as docs.gitlab.com describes: projects named by id or URL-encoded
path, `PRIVATE-TOKEN`, 201 on create, 204 on delete, 401 without a good token, 404 for an
unknown project, 403 below the role a request needs, 400 for a state it does not know or a
status that cannot move to the state it is in.

    async with GitLabApi(tokens={"t": {"maintainer"}}) as gitlab:
        ... gitlab.api_url (ends in /api/v4) ... gitlab.received ...

Roles: "maintainer" (hooks and statuses), "developer" (statuses only); "all" is maintainer.
"""
from __future__ import annotations

import re
from urllib.parse import unquote

from aiohttp import web

from tests.support.scm_standin import RepositoryState, ScmStandIn

STATES = ("pending", "running", "success", "failed", "canceled")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_HOOK_FIELDS = ("push_events", "issues_events", "confidential_issues_events",
                "merge_requests_events", "tag_push_events", "note_events",
                "confidential_note_events", "job_events", "pipeline_events", "wiki_page_events",
                "deployment_events", "releases_events")
# GitLab's state machine names the event that moves a status into each state.
_EVENTS = {"pending": "enqueue", "running": "run", "success": "succeed", "failed": "drop",
           "canceled": "cancel"}


class GitLabApi(ScmStandIn):
    prefix = "/api/v4"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.project_ids = {path: 100 + n for n, path in enumerate(self.repositories)}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        # The project's id or its path with every "/" as %2F: matched on the raw path, since
        # a router may decode %2F into a separator.
        router.add_route("*", self.prefix + "/projects/{rest:.*}", self._dispatch)

    async def _dispatch(self, request: web.Request) -> web.Response:
        raw = request.raw_path.partition("?")[0][len(self.prefix + "/projects/"):]
        project, _, rest = raw.partition("/")
        routes = {("GET", ""): self._get_project, ("GET", "hooks"): self._list_hooks,
                  ("POST", "hooks"): self._create_hook}
        hook = re.fullmatch(r"hooks/(\d+)", rest)
        status = re.fullmatch(r"statuses/([^/]+)", rest)
        if (request.method, rest) in routes:
            handler, argument = routes[request.method, rest], None
        elif hook and request.method in ("PUT", "DELETE", "GET"):
            handler = {"PUT": self._update_hook, "DELETE": self._delete_hook,
                       "GET": self._get_hook}[request.method]
            argument = int(hook.group(1))
        elif status and request.method == "POST":
            handler, argument = self._create_status, status.group(1)
        else:
            return _error(404, "404 Not Found")
        token = request.headers.get("PRIVATE-TOKEN")
        roles = self.scopes(token)
        if roles is None:
            return _error(401, "401 Unauthorized")
        path = unquote(project)
        path = next((p for p, i in self.project_ids.items() if str(i) == path), path)
        state = self.repository(path)
        if state is None:
            return _error(404, "404 Project Not Found")
        needs = "developer" if handler in (self._create_status, self._get_project) \
            else "maintainer"
        if not (roles & {needs, "maintainer", "all"}):
            return _error(403, "403 Forbidden")
        body = await request.json() if request.body_exists else None
        return await handler(request, path, state, argument, body)

    def _hook_view(self, path: str, hook: dict) -> dict:
        view = {"id": hook["id"], "url": hook["url"], "name": "", "description": "",
                "project_id": self.project_ids[path], "push_events_branch_filter": "",
                "enable_ssl_verification": hook.get("enable_ssl_verification", True),
                "alert_status": "executable", "disabled_until": None, "url_variables": [],
                "created_at": "2026-12-01T00:00:00Z"}
        view.update({field: hook.get(field, field == "push_events") for field in _HOOK_FIELDS})
        return view

    async def _get_project(self, request, path, state, _, body) -> web.Response:
        return web.json_response({"id": self.project_ids[path], "path_with_namespace": path})

    async def _list_hooks(self, request, path, state: RepositoryState, _, body):
        per_page = min(int(request.query.get("per_page", "20")), 100)
        page = int(request.query.get("page", "1"))
        hooks = sorted(state.hooks.values(), key=lambda h: h["id"])
        headers = {"X-Total": str(len(hooks)), "X-Per-Page": str(per_page),
                   "X-Page": str(page)}
        if page * per_page < len(hooks):
            headers["X-Next-Page"] = str(page + 1)
            headers["Link"] = f'<{request.url.update_query(per_page=per_page, page=page + 1)}>;' \
                              ' rel="next"'
        chosen = hooks[(page - 1) * per_page:page * per_page]
        return web.json_response([self._hook_view(path, h) for h in chosen], headers=headers)

    async def _get_hook(self, request, path, state, hook_id, body):
        hook = state.hooks.get(hook_id)
        if hook is None:
            return _error(404, "404 Not found")
        return web.json_response(self._hook_view(path, hook))

    async def _create_hook(self, request, path, state: RepositoryState, _, body):
        if not isinstance(body, dict) or not body.get("url"):
            return web.json_response({"error": "url is missing"}, status=400)
        hook = {"id": self.new_id(), **body}
        state.hooks[hook["id"]] = hook
        return web.json_response(self._hook_view(path, hook), status=201)

    async def _update_hook(self, request, path, state: RepositoryState, hook_id, body):
        hook = state.hooks.get(hook_id)
        if hook is None:
            return _error(404, "404 Not found")
        if not isinstance(body, dict) or not body.get("url"):
            return web.json_response({"error": "url is missing"}, status=400)
        if body["url"] != hook["url"] and "token" not in body:
            hook.pop("token", None)  # a new URL resets the secret token
        hook.update(body)
        return web.json_response(self._hook_view(path, hook))

    async def _delete_hook(self, request, path, state: RepositoryState, hook_id, body):
        if state.hooks.pop(hook_id, None) is None:
            return _error(404, "404 Not found")
        return web.Response(status=204)

    async def _create_status(self, request, path, state: RepositoryState, sha, body):
        if not _SHA.match(sha):
            return _error(404, "404 Commit Not Found")
        if not isinstance(body, dict) or body.get("state") not in STATES:
            return web.json_response({"error": "state does not have a valid value"}, status=400)
        name = body.get("name") or body.get("context") or "default"
        current = next((s for s in reversed(state.statuses)
                        if s["sha"] == sha and s["name"] == name), None)
        if current is not None and current["status"] == body["state"] \
                and body["state"] in ("pending", "running"):
            return _error(400, f"Cannot transition status via :{_EVENTS[body['state']]} "
                               f"from :{current['status']}")
        status = {"id": self.new_id(), "sha": sha, "ref": "main", "status": body["state"],
                  "name": name, "target_url": body.get("target_url"),
                  "description": body.get("description"), "created_at": "2026-12-01T00:00:00Z",
                  "started_at": None, "finished_at": None, "allow_failure": False,
                  "coverage": None, "author": {"id": 1, "username": "basewatch"}}
        state.statuses.append(status)
        return web.json_response(status, status=201)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)
