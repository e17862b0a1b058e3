"""GitHub webhooks: `push`, `pull_request` (opened, synchronize, reopened) and `ping`, signed
with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from basewatch.triggers.source_events import SourceEvent
from basewatch.triggers.webhooks import payload as p
from basewatch.triggers.webhooks.signatures import hmac_sha256, same

NAME = "github"
SIGNS_BODY = True
BUILT_ACTIONS = ("opened", "synchronize", "reopened")
_REPO_URLS = ("clone_url", "ssh_url", "html_url", "git_url")


def offered(headers: Mapping[str, str]) -> bool:
    return bool(p.lowered(headers).get("x-hub-signature-256"))


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    signature = p.lowered(headers).get("x-hub-signature-256", "")
    return same(signature, "sha256=" + hmac_sha256(secret, body))


def parse(headers: Mapping[str, str], body: bytes) -> list[SourceEvent]:
    fields = p.lowered(headers)
    event = fields.get("x-github-event")
    if not event:
        raise p.MalformedPayloadError("the X-GitHub-Event header is missing")
    delivery = p.delivery(fields.get("x-github-delivery"))
    if event not in ("push", "pull_request", "ping"):
        raise p.UnknownEventError(NAME, event)
    payload = p.load(headers, body)
    if event == "ping":
        return [ping(NAME, payload, delivery)]
    if event == "push":
        return [push(NAME, payload, delivery)]
    return [pull_request(NAME, payload, delivery, BUILT_ACTIONS)]


def repository_urls(payload: dict, path: str) -> tuple[str, ...]:
    return p.urls(payload, *(f"{path}.{key}" for key in _REPO_URLS))


def ping(provider: str, payload: dict, delivery: str | None) -> SourceEvent:
    # A hook on an organisation or an app has no repository: still a good ping.
    has_repository = isinstance(payload.get("repository"), dict)
    return SourceEvent(provider, "ping", delivery=delivery,
                       repository_urls=repository_urls(payload, "repository")
                       if has_repository else ())


def push(provider: str, payload: dict, delivery: str | None) -> SourceEvent:
    """A push as GitHub, Gitea and Forgejo send it (the same shape)."""
    ref = p.string(payload, "ref")
    after = p.sha(payload, "after")
    event = SourceEvent(provider, "push", repository_urls(payload, "repository"),
                        commit=None if p.is_zero(after) else after,
                        default_branch=p.string(payload, "repository.default_branch", None),
                        delivery=delivery)
    branch = p.branch_of_ref(ref, "ref")
    if branch is None:
        kind = "a tag" if ref.startswith("refs/tags/") else "not a branch"
        return _ignored(event, f"{_shown(ref)} is {kind}")
    event = replace(event, branch=branch)
    if p.is_zero(after) or payload.get("deleted") is True:
        return _ignored(event, f"branch {branch} was deleted")
    return event


def pull_request(provider: str, payload: dict, delivery: str | None,
                 built: tuple[str, ...]) -> SourceEvent:
    """A pull request as GitHub, Gitea and Forgejo send it: `action`, `number`, and
    `pull_request.head` and `.base` each with its ref, SHA and repository."""
    action = p.string(payload, "action")
    number = p.number(payload, "number")
    base_id = p.field(payload, "pull_request.base.repo.id")
    head_repo = p.field(payload, "pull_request.head.repo", None)
    head_id = head_repo.get("id") if isinstance(head_repo, dict) else None
    event = SourceEvent(
        provider, "pull_request", repository_urls(payload, "pull_request.base.repo"),
        branch=p.branch(p.string(payload, "pull_request.head.ref"), "pull_request.head.ref"),
        commit=p.sha(payload, "pull_request.head.sha"),
        target_branch=p.branch(p.string(payload, "pull_request.base.ref"),
                               "pull_request.base.ref"),
        pull_request=number, fetch_ref=f"refs/pull/{number}/head",
        # A fork deleted since has no head repository: still not this repository.
        from_fork=head_id != base_id,
        default_branch=p.string(payload, "pull_request.base.repo.default_branch", None),
        delivery=delivery)
    if action not in built:
        return _ignored(event, f"pull request action {_shown(action)} does not build")
    return event


def _ignored(event: SourceEvent, reason: str) -> SourceEvent:
    return replace(event, ignored=reason)


def _shown(text: str) -> str:
    return repr(text[:80])
