"""Azure DevOps service hooks (Web Hooks consumer): `git.push`, `git.pullrequest.created` and
`git.pullrequest.updated`, authenticated by HTTP basic auth whose password is the secret (any
user name). The event is named in the body (`eventType`), not in a header."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import replace

from basewatch.triggers.source_events import SourceEvent
from basewatch.triggers.webhooks import payload as p
from basewatch.triggers.webhooks.signatures import same

NAME = "azure-devops"
SIGNS_BODY = False
_REPO_URLS = ("remoteUrl", "sshUrl", "webUrl")


def _password(headers: Mapping[str, str]) -> str | None:
    scheme, _, credentials = p.lowered(headers).get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    _, colon, password = decoded.decode("utf-8", "surrogateescape").partition(":")
    return password if colon else None


def offered(headers: Mapping[str, str]) -> bool:
    return bool(_password(headers))


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    return same(_password(headers), secret)


def parse(headers: Mapping[str, str], body: bytes) -> list[SourceEvent]:
    payload = p.load(headers, body)
    event = p.string(payload, "eventType")
    delivery = p.delivery(p.string(payload, "id", None))
    if event == "git.push":
        return pushes(payload, delivery)
    if event in ("git.pullrequest.created", "git.pullrequest.updated"):
        return [pull_request(payload, delivery)]
    raise p.UnknownEventError(NAME, event)


def _urls(payload: dict) -> tuple[str, ...]:
    return p.urls(payload, *(f"resource.repository.{key}" for key in _REPO_URLS))


def _default_branch(payload: dict) -> str | None:
    ref = p.string(payload, "resource.repository.defaultBranch", None)
    return p.branch_of_ref(ref, "resource.repository.defaultBranch") if ref else None


def pushes(payload: dict, delivery: str | None) -> list[SourceEvent]:
    """One event per ref the push updated: Azure DevOps reports several in one delivery."""
    updates = p.field(payload, "resource.refUpdates")
    if not isinstance(updates, list) or not updates:
        raise p.MalformedPayloadError("resource.refUpdates: expected a list of ref updates")
    urls, default_branch = _urls(payload), _default_branch(payload)
    events = []
    for index, update in enumerate(updates):
        path = f"resource.refUpdates[{index}]"
        if not isinstance(update, dict):
            raise p.MalformedPayloadError(f"{path}: expected an object")
        try:
            ref, new = p.string(update, "name"), p.sha(update, "newObjectId")
        except p.MalformedPayloadError as error:
            raise p.MalformedPayloadError(f"{path}.{error}") from None
        event = SourceEvent(NAME, "push", urls, commit=None if p.is_zero(new) else new,
                            default_branch=default_branch, delivery=delivery)
        branch = p.branch_of_ref(ref, f"{path}.name")
        if branch is None:
            kind = "a tag" if ref.startswith("refs/tags/") else "not a branch"
            events.append(replace(event, ignored=f"{ref[:80]!r} is {kind}"))
        elif p.is_zero(new):
            events.append(replace(event, branch=branch, ignored=f"branch {branch} was deleted"))
        else:
            events.append(replace(event, branch=branch))
    return events


def pull_request(payload: dict, delivery: str | None) -> SourceEvent:
    number = p.number(payload, "resource.pullRequestId")
    source = p.branch_of_ref(p.string(payload, "resource.sourceRefName"),
                             "resource.sourceRefName")
    target = p.branch_of_ref(p.string(payload, "resource.targetRefName"),
                             "resource.targetRefName")
    if source is None or target is None:
        raise p.MalformedPayloadError("resource.sourceRefName and targetRefName must be "
                                      "branches (refs/heads/...)")
    event = SourceEvent(
        NAME, "pull_request", _urls(payload), branch=source,
        commit=p.sha(payload, "resource.lastMergeSourceCommit.commitId"),
        target_branch=target, pull_request=number,
        # Azure Repos serves no refs/pull/N/head: its merge ref has the source commit as
        # second parent, so fetching it (two commits deep) brings the commit to build.
        fetch_ref=f"refs/pull/{number}/merge",
        from_fork=isinstance(p.field(payload, "resource.forkSource", None), dict),
        default_branch=_default_branch(payload), delivery=delivery)
    status = p.string(payload, "resource.status", "active")
    if status != "active":
        return replace(event, ignored=f"pull request is {status[:40]!r}, not active")
    return event
