"""The daemon's aiohttp application. A thin door: every handler asks a service for the answer."""
from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from basewatch.http.api import ApiServices, add_api, api_auth
from basewatch.metrics import Metrics

HealthProbe = Callable[[], Awaitable[dict]]


def create_app(health: HealthProbe, services: ApiServices, api_token: str | None,
               metrics: Metrics, upload: Callable) -> web.Application:
    # Context uploads are streamed to disk with their own limit; other bodies stay small.
    app = web.Application(middlewares=[api_auth(api_token)], client_max_size=4 * 1024 * 1024)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))

    async def healthz(request: web.Request) -> web.Response:
        # Always 200 while the daemon runs: a dead engine or registry is reported, not fatal,
        # and an orchestrator restarting the daemon would not bring either back.
        return web.json_response(await health())

    app.router.add_get("/healthz", healthz)
    add_api(app, services, upload)
    return app
