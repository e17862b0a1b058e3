"""`POST /webhooks/github`, `/webhooks/gitlab`, `/webhooks/azure-devops`, `/webhooks/gitea`
(Gitea and Forgejo): git servers' deliveries in, `SourceEvent`s handed to the sink out.

Not behind the API token (a git server cannot send it): each delivery is authenticated by its
own signature or token, checked in constant time against the webhook secret of every task that
names one (`webhook_secret_env`, read from the environment as the delivery arrives) and
against the secrets the daemon keeps (`kept_secrets`: of the hooks it registered, or generated
for `basewatch task webhook`). Only the
tasks whose secret verifies it may be triggered by it, so a delivery signed with one
repository's secret cannot rebuild another's tasks. Nothing is parsed before that check; a
provider whose token is in a header is checked before its body is read.

Answers: 401 bad or missing signature; 413 body over MAX_BODY_BYTES; 400 malformed (not JSON,
a field missing or of a wrong type, no event header); 200 a ping; 202 otherwise, with the runs
queued or why none was: an event basewatch does not build on (issues, releases...) is a 202
too, not a 400, because GitLab disables a hook that keeps answering 4xx. A redelivery (same
delivery id and body) among the last RECENT_DELIVERIES is answered without asking the sink.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Collection, Mapping
from types import ModuleType
from typing import Awaitable, Callable, Protocol

from aiohttp import hdrs, web

from basewatch.errors import BasewatchError
from basewatch.http.common import json_error, read_bounded
from basewatch.metrics import Metrics
from basewatch.redaction import KNOWN
from basewatch.tasks import Task
from basewatch.triggers.source_events import SourceEvent, SourceEventSink, SourceOutcome
from basewatch.triggers.webhooks import PROVIDERS
from basewatch.triggers.webhooks.payload import MalformedPayloadError, UnknownEventError
from basewatch.watcher.notifications import RecentEvents

log = logging.getLogger(__name__)

PREFIX = "/webhooks/"
# GitHub sends up to 2048 commits in one push event; bodies past this are refused (413) and
# left to git polling.
MAX_BODY_BYTES = 8 * 1024 * 1024
RECENT_DELIVERIES = 10_000


class TaskList(Protocol):
    """What the receivers read of the store: every task, for its webhook secret."""

    async def all(self) -> list[Task]: ...


KeptSecrets = Callable[[], Awaitable[Mapping[str, str]]]  # task → the secret the daemon keeps


class CommitTriggersUnavailable:
    """The sink of a daemon without commit triggers: every delivery answered, nothing queued."""

    async def on_event(self, event: SourceEvent, tasks: Collection[str] | None = None
                       ) -> SourceOutcome:
        return SourceOutcome(reason="commit triggers are not available")


def add_source_webhooks(app: web.Application, tasks: TaskList, metrics: Metrics | None = None,
                        sink: SourceEventSink | None = None,
                        environ: Mapping[str, str] = os.environ,
                        kept_secrets: KeptSecrets | None = None) -> None:
    """One POST route per provider under /webhooks/; `environ` holds the secrets tasks name in
    webhook_secret_env, `kept_secrets` those the daemon keeps."""
    recent = RecentEvents(RECENT_DELIVERIES)
    for path, provider in PROVIDERS.items():
        receiver = _Receiver(provider, tasks, sink or CommitTriggersUnavailable(), recent,
                             metrics, environ, kept_secrets)
        app.router.add_post(PREFIX + path, receiver.receive)


class _Receiver:
    def __init__(self, provider: ModuleType, tasks: TaskList, sink: SourceEventSink,
                 recent: RecentEvents, metrics: Metrics | None, environ: Mapping[str, str],
                 kept_secrets: KeptSecrets | None = None):
        self.kept_secrets = kept_secrets
        self.provider = provider
        self.tasks = tasks
        self.sink = sink
        self.recent = recent
        self.metrics = metrics
        self.environ = environ

    def _count(self, result: str, event: str = "unknown", provider: str | None = None) -> None:
        if self.metrics is not None:
            self.metrics.source_events.labels(provider or self.provider.NAME, event,
                                              result).inc()

    def _refuse(self, status: int, result: str, message: str) -> web.Response:
        self._count(result)
        headers = {hdrs.WWW_AUTHENTICATE: 'Basic realm="basewatch"'} \
            if status == 401 and self.provider.NAME == "azure-devops" else None
        return json_error(status, message, headers)

    async def receive(self, request: web.Request) -> web.Response:
        provider, headers = self.provider, request.headers
        if not provider.offered(headers):
            return self._refuse(401, "unauthorized", _MISSING[provider.NAME])
        try:
            secrets = await self._secrets()
        except BasewatchError as error:  # the store busy: the provider retries a 5xx
            log.warning("%s webhook not handled: %s", provider.NAME, error)
            return self._refuse(503, "error", str(error))
        if not secrets:  # nothing could verify it: not worth reading the body
            return self._refuse(401, "unauthorized", _WRONG)
        if not provider.SIGNS_BODY:  # a token in a header: checked before the body is read
            eligible = _verified(provider, headers, b"", secrets)
            if not eligible:
                return self._refuse(401, "unauthorized", _WRONG)
        body = await read_bounded(request, MAX_BODY_BYTES)
        if body is None:
            return self._refuse(413, "too_large",
                                f"webhook body is larger than {MAX_BODY_BYTES} bytes")
        if provider.SIGNS_BODY:
            # Off the loop: one HMAC of up to MAX_BODY_BYTES per distinct secret.
            eligible = await asyncio.to_thread(_verified, provider, headers, body, secrets)
            if not eligible:
                return self._refuse(401, "unauthorized", _WRONG)
        try:
            events = provider.parse(headers, body)
        except UnknownEventError as error:
            self._count("unwanted", "other")
            return web.json_response({"run_ids": [], "reason": str(error)}, status=202)
        except MalformedPayloadError as error:
            return self._refuse(400, "malformed", str(error))
        return await self._handle(events, body, eligible)

    async def _handle(self, events: list[SourceEvent], body: bytes, eligible: frozenset[str]
                      ) -> web.Response:
        key = _delivery_key(self.provider.NAME, events, body)
        if key is not None and not self.recent.first_time(key):
            for event in events:
                self._count("duplicate", event.kind, event.provider)
            return web.json_response({"run_ids": [], "duplicate": True,
                                      "reason": "this delivery was already received"},
                                     status=202)
        answers = []
        try:
            for event in events:
                answers.append(await self._hand_on(event, eligible))
        except Exception as error:
            if key is not None:
                self.recent.forget(key)  # nothing was done: let the provider's retry through
            self._count("error", events[0].kind if events else "unknown", events[0].provider
                        if events else None)
            if isinstance(error, BasewatchError):
                log.warning("%s webhook not handled: %s", self.provider.NAME, error)
                return json_error(503, str(error))
            log.exception("%s webhook not handled", self.provider.NAME)
            return json_error(503, "internal error while handling the webhook; see the daemon "
                                   "log")
        if events and all(event.kind == "ping" for event in events):
            return web.json_response({"ping": "ok", "tasks": len(eligible)})
        run_ids = [run_id for answer in answers for run_id in answer["run_ids"]]
        return web.json_response({"run_ids": run_ids, "events": answers}, status=202)

    async def _hand_on(self, event: SourceEvent, eligible: frozenset[str]) -> dict:
        described = {"kind": event.kind, "branch": event.branch, "commit": event.commit,
                     "pull_request": event.pull_request}
        if event.kind == "ping":
            self._count("ping", "ping", event.provider)
            return {**described, "run_ids": [], "reason": "ping"}
        if event.ignored is not None:
            self._count("ignored", event.kind, event.provider)
            log.info("%s %s ignored: %s", event.provider, event.kind, event.ignored)
            return {**described, "run_ids": [], "reason": event.ignored}
        outcome = await self.sink.on_event(event, tasks=eligible)
        self._count("queued" if outcome.run_ids else "unwanted", event.kind, event.provider)
        log.info("%s %s %s at %s: %s", event.provider, event.kind, event.branch,
                 (event.commit or "")[:12],
                 f"queued {', '.join(outcome.run_ids)}" if outcome.run_ids
                 else outcome.reason or "nothing queued")
        return {**described, "run_ids": list(outcome.run_ids), "reason": outcome.reason}

    async def _secrets(self) -> dict[str, list[str]]:
        """Each webhook secret the tasks name (set in the environment) → the tasks holding it."""
        by_secret: dict[str, list[str]] = {}
        kept = await self.kept_secrets() if self.kept_secrets is not None else {}
        for task in await self.tasks.all():
            named = self.environ.get(task.webhook_secret_env) \
                if task.webhook_secret_env else None
            for secret in {named, kept.get(task.name)} - {None, ""}:
                KNOWN.add(secret)
                by_secret.setdefault(secret, []).append(task.name)
        return by_secret


def _verified(provider: ModuleType, headers: Mapping[str, str], body: bytes,
              secrets: dict[str, list[str]]) -> frozenset[str]:
    """The tasks whose secret verifies the delivery. Every secret is tried (no early exit), each
    in constant time."""
    matched = [names for secret, names in secrets.items()
               if provider.verify(headers, body, secret)]
    return frozenset(name for names in matched for name in names)


def _delivery_key(provider: str, events: list[SourceEvent], body: bytes) -> str | None:
    """What identifies a redelivery: its id and its body, so a delivery that reuses an id with
    other content (or another repository's secret) cannot shadow the real one."""
    delivery = next((event.delivery for event in events if event.delivery), None)
    if delivery is None:
        return None
    digest = hashlib.sha256(body).hexdigest()
    return hashlib.sha256(f"{provider}\n{delivery}\n{digest}".encode()).hexdigest()


_WRONG = "wrong webhook signature or token: no task's webhook secret verifies this delivery"
_MISSING = {
    "github": "missing X-Hub-Signature-256: set a secret on the GitHub webhook",
    "gitea": "missing X-Gitea-Signature (or X-Forgejo-Signature): set a secret on the webhook",
    "gitlab": "missing X-Gitlab-Token: set a secret token on the GitLab webhook",
    "azure-devops": "missing basic auth: set a password on the Azure DevOps service hook",
}
