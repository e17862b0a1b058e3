"""The daemon's aiohttp application. A thin door: every handler asks a service for the answer."""
from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import hdrs, web
from prometheus_client.aiohttp import make_aiohttp_handler

from basewatch.http.api import ApiServices, add_api, api_auth
from basewatch.metrics import Metrics

HealthProbe = Callable[[], Awaitable[dict]]
# Seconds a client is told to wait while the daemon registers its config's tasks.
STARTING_RETRY_AFTER = "1"


def create_app(health: HealthProbe, services: ApiServices, api_token: str | None,
               metrics: Metrics, upload: Callable) -> web.Application:
    # Context uploads are streamed to disk with their own limit; other bodies stay small.
    app = web.Application(middlewares=[api_auth(api_token)], client_max_size=4 * 1024 * 1024)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))

    async def healthz(request: web.Request) -> web.Response:
        # 200 once started, degraded or not: a dead engine or registry is reported, not fatal,
        # and an orchestrator restarting the daemon would not bring either back. 503 while
        # the config's tasks are still being registered: a load balancer or readiness probe
        # sends nothing yet to a daemon that would answer "not registered yet" for them.
        report = await health()
        if report["status"] == "starting":
            return web.json_response(report, status=503,
                                     headers={hdrs.RETRY_AFTER: STARTING_RETRY_AFTER})
        return web.json_response(report)

    app.router.add_get("/healthz", healthz)
    add_api(app, services, upload)
    return app
