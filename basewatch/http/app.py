"""The daemon's aiohttp application. A thin door: every handler asks a service for the answer."""
from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import hdrs, web
from prometheus_client.aiohttp import make_aiohttp_handler

from basewatch.errors import StoreBusyError
from basewatch.http.api import ApiServices, add_api, api_auth
from basewatch.http.common import json_error
from basewatch.http.starting import STARTING_RETRY_AFTER
from basewatch.metrics import Metrics

HealthProbe = Callable[[], Awaitable[dict]]


def webhooks_after_start(starting: Callable[[], bool]) -> Callable:
    """Webhooks wait for the start: a push or commit heard while the config's tasks are
    still being registered would reach only the tasks registered so far. 503 until then, as
    a daemon not listening yet would have refused it: a registry retries until it is taken."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[..., Awaitable]):
        if request.path.startswith("/webhooks/") and starting():
            return json_error(503, "the daemon is starting: its config's tasks are being "
                                   "registered; send it again in a moment",
                              {hdrs.RETRY_AFTER: STARTING_RETRY_AFTER})
        return await handler(request)

    return middleware


def create_app(health: HealthProbe, services: ApiServices, api_token: str | None,
               metrics: Metrics, upload: Callable,
               starting: Callable[[], bool] = lambda: False) -> web.Application:
    # Context uploads are streamed to disk with their own limit; other bodies stay small.
    app = web.Application(middlewares=[webhooks_after_start(starting), api_auth(api_token)],
                          client_max_size=4 * 1024 * 1024)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))

    async def healthz(request: web.Request) -> web.Response:
        # 200 once started, degraded or not: a dead engine or registry is reported, not fatal,
        # and an orchestrator restarting the daemon would not bring either back. 503 while
        # the config's tasks are still being registered: a load balancer or readiness probe
        # sends nothing yet to a daemon that would answer "not registered yet" for them.
        try:
            report = await health()
        except StoreBusyError as exc:
            # The database refuses (PostgreSQL out of reach, SQLite locked): this daemon can
            # neither queue nor record runs, so a load balancer should send elsewhere.
            return web.json_response({"status": "unavailable", "database": str(exc)},
                                      status=503, headers={hdrs.RETRY_AFTER: "5"})
        if report["status"] == "starting":
            return web.json_response(report, status=503,
                                     headers={hdrs.RETRY_AFTER: STARTING_RETRY_AFTER})
        return web.json_response(report)

    app.router.add_get("/healthz", healthz)
    add_api(app, services, upload)
    return app
