"""The web dashboard, served by the daemon at `/`: tasks, runs with their live logs, and the
dependency graph as a picture, refreshed by server-sent events as runs start and end.

Every asset is a file of the package (`dashboard_assets/`), served here under a strict
Content-Security-Policy: scripts and styles from this daemon only, nothing inline, no other
origin contacted. The page itself holds no data; the data endpoints under /ui/ need the session
cookie of `dashboard_auth.py`. Handlers only ask the daemon's services, as the API's do.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from html import escape
from pathlib import Path
from string import Template

from aiohttp import hdrs, web

from basewatch.errors import BasewatchError
from basewatch.graph_svg import render_svg
from basewatch.http.api import stream_log
from basewatch.http.common import json_error
from basewatch.http.dashboard_auth import COOKIE, Sessions, TooManySignIns, same_origin
from basewatch.run_events import RunEvents, TooManySubscribers, events_of

log = logging.getLogger(__name__)

ASSETS = Path(__file__).with_name("dashboard_assets")
# Served by name; nothing else under the folder is reachable.
STATIC = {"app.js": "text/javascript", "style.css": "text/css",
          "favicon.svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
                    hdrs.CACHE_CONTROL: "no-store"}
# Runs listed on the page, newest first.
RUNS_SHOWN = 30
# Log and event streams open at once, over every dashboard; each holds a connection.
MAX_STREAMS = 32
# How often an open stream checks that its reader is still there and still signed in.
STREAM_CHECK_SECONDS = 1.0
# A comment on a quiet event stream, so proxies and the browser know it is alive.
HEARTBEAT_SECONDS = 15.0
# An EventSource that lost its stream (a dropped subscriber, a restart) reconnects after this.
RECONNECT_MS = 2000
MAX_FORM_BYTES = 4096


class Dashboard:
    def __init__(self, services, sessions: Sessions, events: RunEvents):
        self.services = services
        self.sessions = sessions
        self.events = events
        self._streams = 0  # log and event streams open now
        self._closing = asyncio.Event()
        # Read once: a few kilobytes, and no disk read on the loop per request.
        self._index = (ASSETS / "index.html").read_text()
        self._sign_in = Template((ASSETS / "signin.html").read_text())
        self._static = {name: (ASSETS / name).read_bytes() for name in STATIC}

    # ------------------------------------------------------------------ pages

    async def index(self, request: web.Request) -> web.Response:
        if self.sessions.token is None:
            return self._sign_in_page("The dashboard needs the API token: set api_token_env "
                                      "in the config and that variable for the daemon.", 503)
        if not self.sessions.signed_in(request):
            return self._sign_in_page("")
        return web.Response(text=self._index, content_type="text/html",
                            headers=SECURITY_HEADERS)

    def _sign_in_page(self, message: str, status: int = 200) -> web.Response:
        shown = f'<p class="error" role="alert">{escape(message, quote=False)}</p>'
        body = self._sign_in.substitute(message=shown if message else "")
        return web.Response(text=body, content_type="text/html", status=status,
                            headers=SECURITY_HEADERS)

    async def sign_in(self, request: web.Request) -> web.Response:
        if not same_origin(request):
            return self._sign_in_page("Refused: the sign-in did not come from this daemon's "
                                      "page.", 403)
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            return self._sign_in_page("Refused: the form is too large.", 413)
        try:
            form = await request.post()
        except ValueError:
            return self._sign_in_page("Refused: the form could not be read.", 400)
        token = form.get("token")
        if not isinstance(token, str) or not token.strip():
            return self._sign_in_page("Enter the API token (the daemon's api_token_env).", 400)
        try:
            session = await self.sessions.sign_in(token.strip())
        except TooManySignIns:
            return self._sign_in_page("Too many sign-ins at once: try again in a moment.", 429)
        if session is None:
            log.warning("dashboard: a sign-in with a wrong token from %s", request.remote)
            return self._sign_in_page("Wrong token: that is not the daemon's API token.", 401)
        response = web.Response(status=303, headers={**SECURITY_HEADERS, hdrs.LOCATION: "/"})
        self.sessions.set_cookie(response, request, session)
        return response

    async def sign_out(self, request: web.Request) -> web.Response:
        if not same_origin(request):
            return self._sign_in_page("Refused: the sign-out did not come from this daemon's "
                                      "page.", 403)
        self.sessions.sign_out(request.cookies.get(COOKIE))
        response = web.Response(status=303, headers={**SECURITY_HEADERS, hdrs.LOCATION: "/"})
        self.sessions.clear_cookie(response)
        return response

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        # Assets hold no data: served without a session, so the sign-in page has its style.
        return web.Response(body=self._static[name], content_type=STATIC[name],
                            headers={**SECURITY_HEADERS, hdrs.CACHE_CONTROL: "no-cache"})

    # ------------------------------------------------------------------ data (signed in)

    async def state(self, request: web.Request) -> web.Response:
        """All the page shows, in one answer: one refresh costs one read of the tasks."""
        tasks = await self.services.task_summaries()
        runs = await self.services.list_runs(None, None, None, RUNS_SHOWN)
        return web.json_response({"tasks": tasks, "runs": runs,
                                  "graph_svg": await self._graph_svg(tasks)},
                                 headers=SECURITY_HEADERS)

    async def graph(self, request: web.Request) -> web.Response:
        """The graph alone (to open or save it by itself)."""
        svg = await self._graph_svg(await self.services.task_summaries())
        return web.Response(text=svg, content_type="image/svg+xml", headers=SECURITY_HEADERS)

    async def _graph_svg(self, tasks: list[dict]) -> str:
        statuses = {t["name"]: t["last_run"]["status"] for t in tasks if t.get("last_run")}
        return render_svg(await self.services.graph_view(), statuses)

    async def run_log(self, request: web.Request) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        source = await self.services.run_log(run_id)
        response = web.StreamResponse(headers={
            **SECURITY_HEADERS, hdrs.CONTENT_TYPE: "text/plain; charset=utf-8"})
        await response.prepare(request)
        try:
            if await self._while_wanted(request, stream_log(
                    response, source, True, self.services.log_updates.follow(run_id))):
                await response.write_eof()
        except ConnectionResetError:
            pass  # the tab went away: a normal end
        return response

    async def event_stream(self, request: web.Request) -> web.StreamResponse:
        with self.events.subscribe() as subscription:
            response = web.StreamResponse(headers={
                **SECURITY_HEADERS, hdrs.CONTENT_TYPE: "text/event-stream",
                "X-Accel-Buffering": "no"})
            await response.prepare(request)
            # The page reads the whole state when the stream opens: nothing between the last
            # read and this subscription is lost.
            try:
                await self._while_wanted(request, self._send_events(response, subscription))
            except ConnectionResetError:
                pass  # the tab went away: a normal end
            return response

    @staticmethod
    async def _send_events(response: web.StreamResponse, subscription) -> None:
        await response.write(f"retry: {RECONNECT_MS}\nevent: hello\ndata: {{}}\n\n".encode())
        async for event in events_of(subscription, HEARTBEAT_SECONDS):
            await response.write(b": still here\n\n" if event is None else
                                 f"data: {json.dumps(event)}\n\n".encode())

    async def _while_wanted(self, request: web.Request, stream) -> bool:
        """Await `stream`; False when it was cut short: the daemon began to stop (a follower
        would otherwise hold the shutdown until its run ends), the reader went away (noticed
        now, not at the next write, so its slot is free at once) or its session ended."""
        streaming = asyncio.ensure_future(stream)
        unwanted = asyncio.ensure_future(self._unwanted(request))
        try:
            await asyncio.wait({streaming, unwanted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, unwanted):
                task.cancel()
            await asyncio.gather(streaming, unwanted, return_exceptions=True)
        if streaming.cancelled():
            return False
        streaming.result()  # its error, if it had one
        return True

    async def _unwanted(self, request: web.Request) -> None:
        """Returns once the stream for `request` should end."""
        while not self._closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing() or \
                    not self.sessions.signed_in(request):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), STREAM_CHECK_SECONDS)

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def guard(self, request: web.Request, handler):
        """Data under /ui/ needs a session; errors are one-line JSON; streams are counted."""
        if not request.path.startswith("/ui/") or request.path.startswith("/ui/static/") \
                or request.path in ("/ui/sign-in", "/ui/sign-out"):
            return await handler(request)
        if not self.sessions.signed_in(request):
            return json_error(401, "sign in first: the dashboard's session has ended or was "
                                   "never started", SECURITY_HEADERS)
        streaming = request.path == "/ui/events" or request.path.endswith("/log")
        if streaming and self._streams >= MAX_STREAMS:
            return json_error(503, f"{MAX_STREAMS} dashboard streams are open already: close "
                                   "a tab", {hdrs.RETRY_AFTER: "5"})
        self._streams += streaming
        try:
            return await handler(request)
        except TooManySubscribers as exc:
            return json_error(503, str(exc), {hdrs.RETRY_AFTER: "5"})
        except BasewatchError as exc:
            return json_error(exc.http_status, str(exc), SECURITY_HEADERS)
        finally:
            self._streams -= streaming

    async def close(self, app: web.Application) -> None:
        """Before the server stops: end the open streams, which would otherwise hold the
        shutdown until they end by themselves."""
        self._closing.set()
        self.events.close()


def add_dashboard(app: web.Application, services, token: str | None,
                  events: RunEvents) -> Dashboard:
    dashboard = Dashboard(services, Sessions(token), events)
    app.middlewares.append(dashboard.guard)
    app.router.add_get("/", dashboard.index)
    app.router.add_post("/ui/sign-in", dashboard.sign_in)
    app.router.add_post("/ui/sign-out", dashboard.sign_out)
    app.router.add_get("/ui/static/{name}", dashboard.static)
    app.router.add_get("/ui/state", dashboard.state)
    app.router.add_get("/ui/graph.svg", dashboard.graph)
    app.router.add_get("/ui/events", dashboard.event_stream)
    app.router.add_get("/ui/runs/{run_id}/log", dashboard.run_log)
    app.on_shutdown.append(dashboard.close)
    return dashboard
