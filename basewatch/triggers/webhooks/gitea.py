"""Gitea and Forgejo webhooks: `push` and `pull_request` (opened, synchronized, reopened), in
GitHub's shapes, signed with `X-Gitea-Signature` (Forgejo: `X-Forgejo-Signature`, and the Gitea
header too): the bare lowercase hex HMAC-SHA256 of the raw body."""
from __future__ import annotations

from collections.abc import Mapping

from basewatch.triggers.source_events import SourceEvent
from basewatch.triggers.webhooks import github
from basewatch.triggers.webhooks import payload as p
from basewatch.triggers.webhooks.signatures import hmac_sha256, same

NAME = "gitea"
SIGNS_BODY = True
BUILT_ACTIONS = ("opened", "synchronized", "reopened")


def _signature(headers: Mapping[str, str]) -> str | None:
    fields = p.lowered(headers)
    return fields.get("x-forgejo-signature") or fields.get("x-gitea-signature")


def offered(headers: Mapping[str, str]) -> bool:
    # Gitea sends the header empty when the hook has no secret: that is no signature.
    return bool(_signature(headers))


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    return same(_signature(headers) or "", hmac_sha256(secret, body))


def parse(headers: Mapping[str, str], body: bytes) -> list[SourceEvent]:
    fields = p.lowered(headers)
    provider = "forgejo" if "x-forgejo-event" in fields else NAME
    event = fields.get("x-forgejo-event") or fields.get("x-gitea-event")
    if not event:
        raise p.MalformedPayloadError("the X-Gitea-Event (or X-Forgejo-Event) header is missing")
    delivery = p.delivery(fields.get("x-forgejo-delivery") or fields.get("x-gitea-delivery"))
    if event not in ("push", "pull_request"):
        raise p.UnknownEventError(provider, event)
    payload = p.load(headers, body)
    if event == "push":
        return [github.push(provider, payload, delivery)]
    return [github.pull_request(provider, payload, delivery, BUILT_ACTIONS)]
