"""The REST API under /api/: bearer-token auth and JSON errors. Handlers only translate HTTP to
calls on the daemon's services and back."""
from __future__ import annotations

from typing import Awaitable, Callable, Protocol

from aiohttp import hdrs, web

from basewatch.errors import BasewatchError
from basewatch.http.common import json_error, token_matches

API_PREFIX = "/api/"


class ApiServices(Protocol):
    async def graph_view(self) -> dict: ...


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return scheme.lower() == "bearer" and token_matches(given.strip(), token)


def api_auth(token: str | None) -> Callable:
    """Every /api/ request needs `Authorization: Bearer <token>`; the rest of the app is open."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[..., Awaitable]):
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        if not token:
            return json_error(503, "the API is not configured: set api_token_env in the config "
                                   "and that environment variable for the daemon")
        if not _authorized(request, token):
            return json_error(401, "missing or wrong API token: send Authorization: Bearer "
                                   "<token> (the CLI reads BASEWATCH_TOKEN)",
                              {hdrs.WWW_AUTHENTICATE: 'Bearer realm="basewatch"'})
        try:
            return await handler(request)
        except BasewatchError as exc:
            return json_error(400, str(exc))

    return middleware


def add_api(app: web.Application, services: ApiServices) -> None:
    async def graph(request: web.Request) -> web.Response:
        return web.json_response(await services.graph_view())

    app.router.add_get("/api/graph", graph)
