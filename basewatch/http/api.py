"""The REST API under /api/: bearer-token auth and JSON errors. Handlers only translate HTTP to
calls on the daemon's services and back."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Awaitable, Callable, Protocol

import aiohttp
from aiohttp import hdrs, web

from basewatch.errors import BasewatchError, StoreBusyError
from basewatch.http.common import json_error, token_matches
from basewatch.http.openapi import openapi_document
from basewatch.http.uploads import read_part

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
# What a 503 for a busy database tells the client to wait before trying again.
DATABASE_BUSY_RETRY_AFTER_SECONDS = 5
# A quick run's spec part: a task file and a values file (1 MiB each at most) and secrets.
MAX_SPEC_BYTES = 4 * 1024 * 1024
# The most runs one GET /api/runs lists.
MAX_TOP = 10000


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
        except StoreBusyError as exc:
            # Another process holding the database past busy_timeout (a backup, a shell):
            # nothing was changed, and the same request will do once it lets go.
            log.warning("%s %s: the database is busy: %s", request.method, request.path, exc)
            return json_error(503, f"the daemon's database is busy ({exc}): try again shortly",
                              {hdrs.RETRY_AFTER: str(DATABASE_BUSY_RETRY_AFTER_SECONDS)})
        except BasewatchError as exc:
            retry_after = getattr(exc, "retry_after", None)
            return json_error(exc.http_status, str(exc), None if retry_after is None
                              else {hdrs.RETRY_AFTER: str(retry_after)})

    return middleware


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body is not valid JSON"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body must be a JSON object"}),
                                 content_type="application/json")
    _refuse_nul(body)
    return body


def _nul_at(value: object, path: str = "") -> str | None:
    """Where a NUL character hides in a JSON value, as a key path; None when nowhere."""
    if isinstance(value, str):
        return path or "(the value)" if "\0" in value else None
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        here = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key
        if "\0" in str(key):
            return here
        if found := _nul_at(item, here):
            return found
    return None


def _refuse_nul(body: dict) -> None:
    # No name, path, tag or argument may hold one (the OS cuts strings there, and a path with
    # one fails every call); refused here rather than half-way through a run.
    if (where := _nul_at(body)) is not None:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{where}: a NUL character is not allowed"}),
            content_type="application/json")


def add_api(app: web.Application, services, upload) -> None:
    """`services`: basewatch.services.Services plus graph_view; `upload(request)`: store an
    uploaded context and return where it went."""
    routes = web.RouteTableDef()

    document = openapi_document()

    @routes.get("/api/openapi.json")
    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    @routes.get("/api/graph")
    async def graph(request: web.Request) -> web.Response:
        return web.json_response(await services.graph_view())

    @routes.get("/api/tasks")
    async def list_tasks(request: web.Request) -> web.Response:
        return web.json_response(await services.list_tasks())

    @routes.post("/api/tasks")
    async def create_task(request: web.Request) -> web.Response:
        return web.json_response(await services.create_task(await _json_body(request)),
                                 status=201)

    @routes.get("/api/tasks/{name}")
    async def show_task(request: web.Request) -> web.Response:
        return web.json_response(await services.get_task(request.match_info["name"]))

    @routes.patch("/api/tasks/{name}")
    async def update_task(request: web.Request) -> web.Response:
        return web.json_response(await services.update_task(request.match_info["name"],
                                                            await _json_body(request)))

    @routes.delete("/api/tasks/{name}")
    async def delete_task(request: web.Request) -> web.Response:
        await services.delete_task(request.match_info["name"])
        return web.Response(status=204)

    @routes.get("/api/tasks/{name}/webhook")
    async def task_webhook(request: web.Request) -> web.Response:
        return web.json_response(await services.task_webhook(request.match_info["name"]))

    @routes.get("/api/tasks/{name}/timers")
    async def list_timers(request: web.Request) -> web.Response:
        return web.json_response(await services.list_timers(request.match_info["name"]))

    @routes.post("/api/tasks/{name}/timers")
    async def add_timer(request: web.Request) -> web.Response:
        return web.json_response(await services.add_timer(request.match_info["name"],
                                                          await _json_body(request)),
                                 status=201)

    @routes.patch("/api/tasks/{name}/timers/{timer}")
    async def update_timer(request: web.Request) -> web.Response:
        return web.json_response(await services.update_timer(
            request.match_info["name"], request.match_info["timer"], await _json_body(request)))

    @routes.delete("/api/tasks/{name}/timers/{timer}")
    async def remove_timer(request: web.Request) -> web.Response:
        await services.remove_timer(request.match_info["name"], request.match_info["timer"])
        return web.Response(status=204)

    @routes.post("/api/tasks/{name}/runs")
    async def run_task(request: web.Request) -> web.Response:
        body = await _json_body(request) if request.can_read_body else {}
        values = body.get("values") or {}
        if not isinstance(values, dict):
            return json_error(400, "values must be an object of NAME: VALUE")
        return web.json_response(await services.run_task(
            request.match_info["name"], values, body.get("values_file"), body.get("secrets"),
            body.get("registry")), status=202)

    @routes.post("/api/builds")
    async def quick_build(request: web.Request) -> web.Response:
        if request.content_type == "multipart/form-data":
            return await quick_run_upload(request)
        if request.content_type == "application/json":
            body = await _json_body(request)
        else:  # a context tarball, with the build spec as JSON in a header
            await services.check_queue_room()  # before the upload is read, not after
            try:
                body = json.loads(request.headers.get("X-Basewatch-Build", "{}"))
            except json.JSONDecodeError:
                return json_error(400, "the X-Basewatch-Build header is not valid JSON")
            if not isinstance(body, dict):
                return json_error(400, "the X-Basewatch-Build header must be a JSON object")
            _refuse_nul(body)
            return web.json_response(await services.quick_build(body, await upload(request)),
                                     status=202)
        return web.json_response(await services.quick_build(body), status=202)

    async def quick_run_upload(request: web.Request) -> web.Response:
        """A quick run of a task file on an uploaded context: a `spec` part (JSON: the file's
        text, values, secrets; too large and too secret for a header), then a `context` part
        (the tarball)."""
        try:
            reader = await request.multipart()
            part = await reader.next()
            if part is None or part.name != "spec":
                return json_error(400, "the first part must be `spec`, the run's JSON")
            raw = await read_part(part, MAX_SPEC_BYTES)
        except (ValueError, AssertionError, aiohttp.ClientError):
            # aiohttp's multipart reader refuses a malformed body with these
            return json_error(400, "the body is not valid multipart/form-data")
        if raw is None:
            return json_error(413, f"the spec is larger than {MAX_SPEC_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return json_error(400, "the spec part is not valid JSON")
        if not isinstance(body, dict):
            return json_error(400, "the spec part must be a JSON object")
        _refuse_nul(body)
        await services.check_queue_room()  # before the upload is read, not after
        try:
            part = await reader.next()
        except (ValueError, AssertionError, aiohttp.ClientError):
            part = None
        if part is None or part.name != "context":
            return json_error(400, "the second part must be `context`, a gzipped tarball")
        return web.json_response(await services.quick_build(body, await upload(request, part)),
                                 status=202)

    @routes.get("/api/runs")
    async def list_runs(request: web.Request) -> web.Response:
        query = request.query
        top = query.get("top", "15")
        # Bounded: SQLite takes no integer past 2**63, and nobody reads a million runs at once.
        if not (top.isascii() and top.isdigit() and len(top) <= 6 and 1 <= int(top) <= MAX_TOP):
            return json_error(400, f"top must be a whole number from 1 to {MAX_TOP}")
        return web.json_response(await services.list_runs(
            query.get("task"), query.get("status"), query.get("image"), int(top)))

    @routes.get("/api/runs/{run_id}")
    async def show_run(request: web.Request) -> web.Response:
        return web.json_response(await services.get_run(request.match_info["run_id"]))

    @routes.post("/api/runs/{run_id}/cancel")
    async def cancel_run(request: web.Request) -> web.Response:
        return web.json_response(await services.cancel_run(request.match_info["run_id"]))

    @routes.patch("/api/runs/{run_id}")
    async def update_run(request: web.Request) -> web.Response:
        body = await _json_body(request)
        if set(body) != {"archived"} or not isinstance(body["archived"], bool):
            return json_error(400, 'send {"archived": true} or {"archived": false}')
        return web.json_response(await services.update_run(request.match_info["run_id"],
                                                           body["archived"]))

    @routes.get("/api/runs/{run_id}/log")
    async def run_log(request: web.Request) -> web.StreamResponse:
        source = await services.run_log(request.match_info["run_id"])
        follow = request.query.get("follow", "").lower() in ("1", "true", "yes")
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "text/plain; charset=utf-8"})
        await response.prepare(request)
        try:
            await stream_log(response, source, follow,
                              services.log_updates.follow(request.match_info["run_id"]))
            await response.write_eof()
        except ConnectionResetError:
            # The reader went away (`| head`, Ctrl-C on `task logs`): normal, nothing to log.
            pass
        return response

    app.add_routes(routes)


async def stream_log(response: web.StreamResponse, source, follow: bool, updates) -> None:
    """Send a run's log (a run_log_reader.LogSource) from its start; with `follow`, go on
    while the run does, woken by this daemon's writes (`updates`) or looking again every
    `source.recheck_seconds` (another daemon's run)."""
    offset = 0
    with updates as changed:
        while True:
            changed.clear()  # before the read: a write after it wakes the wait below
            chunk = await source.read(offset)
            if chunk:
                offset += len(chunk)
                await response.write(chunk)
            elif follow and await source.running():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), source.recheck_seconds)
            else:
                # The rest: the run may have written its last lines as it ended.
                while chunk := await source.read(offset):
                    offset += len(chunk)
                    await response.write(chunk)
                return
