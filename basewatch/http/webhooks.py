"""`POST /webhooks/registry`: registry push notifications in, digest re-checks out.

The edge only authenticates, bounds and parses the request, and drops redelivered events;
what a push means (a re-check of the tag's digest, never a build by itself) is `on_push`'s.
Redeliveries are dropped by the ids this daemon remembers, then by those the store recorded
(`seen`, when given): an event sent to several daemons on one database, or sent again to any,
is handled once.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

from aiohttp import BasicAuth, hdrs, web

from basewatch.errors import BasewatchError
from basewatch.http.common import json_error, read_bounded, token_matches
from basewatch.metrics import Metrics
from basewatch.store.protocols import NotificationStore
from basewatch.watcher.notifications import (NotificationError, PushNotification, RecentEvents,
                                             parse_notifications)

log = logging.getLogger(__name__)

PATH = "/webhooks/registry"
MAX_BODY_BYTES = 1024 * 1024
RECENT_REGISTRY_EVENTS = web.AppKey("recent_registry_events", RecentEvents)

OnPush = Callable[[list[PushNotification]], Awaitable[int]]


def add_registry_webhook(app: web.Application, token: str | None, on_push: OnPush,
                         metrics: Metrics | None = None,
                         seen: NotificationStore | None = None) -> None:
    """Register the endpoint; `on_push` gets the new pushes and returns how many it re-checks.
    With `seen`, an event another daemon (or this one before a restart) recorded is a
    duplicate too."""
    app[RECENT_REGISTRY_EVENTS] = recent = RecentEvents()

    async def first_time(pushes: list[PushNotification]) -> list[PushNotification]:
        """The pushes neither this daemon's memory nor the store has seen, now recorded in
        both; StoreBusyError (nothing remembered) when the store refuses."""
        fresh = [push for push in pushes if recent.first_time(push.id)]
        if not fresh or seen is None:
            return fresh
        try:
            recorded = await seen.first_time([push.id for push in fresh])
        except BaseException:
            for push in fresh:
                recent.forget(push.id)
            raise
        for push in fresh:
            if push.id not in recorded:
                # Another daemon has it: a redelivery that reaches it again is its to drop.
                recent.forget(push.id)
        return [push for push in fresh if push.id in recorded]

    async def forget(pushes: list[PushNotification]) -> None:
        for push in pushes:
            recent.forget(push.id)
        if seen is not None:
            try:
                await seen.forget([push.id for push in pushes])
            except BasewatchError as error:
                log.warning("registry notification: a retry of %d event(s) will be taken as "
                            "a duplicate, the store refused to forget them: %s",
                            len(pushes), error)

    def rejected(reason: str, response: web.Response) -> web.Response:
        if metrics is not None:
            metrics.notifications_rejected.labels(reason).inc()
        return response

    async def registry_webhook(request: web.Request) -> web.Response:
        if not token:
            return rejected("not_configured", json_error(
                503, "notifications are not configured: set notifications.token_env in the "
                     "config"))
        if not _authorized(request, token):
            return rejected("unauthorized", json_error(
                401, "missing or wrong notification token",
                headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="basewatch"'}))
        body = await read_bounded(request, MAX_BODY_BYTES)
        if body is None:
            return rejected("too_large", json_error(
                413, f"notification body is larger than {MAX_BODY_BYTES} bytes"))
        try:
            pushes, ignored, invalid = parse_notifications(
                request.headers.get(hdrs.CONTENT_TYPE, ""), body)
        except NotificationError as error:
            return rejected("bad_request", json_error(400, str(error)))
        if invalid:
            # repr: a name that is no repository name may hold anything, newlines included.
            shown = ", ".join(repr(push.repository[:100]) for push in invalid[:5])
            log.warning("registry notification: %d push(es) dropped, not repository names: %s%s",
                        len(invalid), shown, ", ..." if len(invalid) > 5 else "")
        try:
            new = await first_time(pushes)
        except BasewatchError as error:  # the store refused: the registry's retry comes back
            log.warning("registry notification not handled: %s", error)
            return json_error(503, str(error))
        if metrics is not None:
            for push in new:
                metrics.notifications_received.labels(push.source).inc()
        rechecked = 0
        if new:
            try:
                rechecked = await on_push(new)
            except Exception as error:
                # Nothing was done, so let the registry's retry through the de-duplication.
                await forget(new)
                if isinstance(error, BasewatchError):
                    log.warning("registry notification not handled: %s", error)
                    return json_error(503, str(error))
                log.exception("registry notification not handled")
                return json_error(503, "internal error while handling the notification; "
                                   "see the daemon log")
            # Registry, repository and tag follow the reference grammar: one line each.
            log.info("registry notification: %s",
                     ", ".join(f"{p.registry or '?'}/{p.repository}:{p.tag}" for p in new))
        return web.json_response({"accepted": len(new), "duplicates": len(pushes) - len(new),
                                  "ignored": ignored, "rejected": len(invalid),
                                  "rechecked": rechecked}, status=202)

    app.router.add_post(PATH, registry_webhook)


def _authorized(request: web.Request, token: str) -> bool:
    """The token as a bearer token, a basic-auth password, or `?token=` (Docker Hub, Quay)."""
    offered = [request.query.get("token")]
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer":
        offered.append(credentials.strip())
    elif scheme.lower() == "basic":
        try:
            offered.append(BasicAuth.decode(header).password)
        except ValueError:
            pass
    return any(token_matches(candidate, token) for candidate in offered)

