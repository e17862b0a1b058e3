"""GitLab webhooks: Push Hook, Tag Push Hook and Merge Request Hook (open, reopen, and update
with new commits), authenticated by the `X-Gitlab-Token` header holding the secret as is."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from basewatch.triggers.source_events import SourceEvent
from basewatch.triggers.webhooks import payload as p
from basewatch.triggers.webhooks.signatures import same

NAME = "gitlab"
SIGNS_BODY = False
_PROJECT_URLS = ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url")


def offered(headers: Mapping[str, str]) -> bool:
    return bool(p.lowered(headers).get("x-gitlab-token"))


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    return same(p.lowered(headers).get("x-gitlab-token"), secret)


def parse(headers: Mapping[str, str], body: bytes) -> list[SourceEvent]:
    fields = p.lowered(headers)
    event = fields.get("x-gitlab-event")
    if not event:
        raise p.MalformedPayloadError("the X-Gitlab-Event header is missing")
    # Idempotency-Key stays the same across retries of one delivery (GitLab 17.4 and later).
    delivery = p.delivery(fields.get("idempotency-key") or fields.get("x-gitlab-event-uuid"))
    if event not in ("Push Hook", "Tag Push Hook", "Merge Request Hook"):
        raise p.UnknownEventError(NAME, event)
    payload = p.load(headers, body)
    if event == "Merge Request Hook":
        return [merge_request(payload, delivery)]
    return [push(payload, delivery)]


def _urls(payload: dict, path: str) -> tuple[str, ...]:
    return p.urls(payload, *(f"{path}.{key}" for key in _PROJECT_URLS))


def push(payload: dict, delivery: str | None) -> SourceEvent:
    ref = p.string(payload, "ref")
    after = p.sha(payload, "after")
    event = SourceEvent(NAME, "push", _urls(payload, "project"),
                        commit=None if p.is_zero(after) else after,
                        default_branch=p.string(payload, "project.default_branch", None),
                        delivery=delivery)
    branch = p.branch_of_ref(ref, "ref")
    if branch is None:
        kind = "a tag" if ref.startswith("refs/tags/") else "not a branch"
        return replace(event, ignored=f"{ref[:80]!r} is {kind}")
    event = replace(event, branch=branch)
    if p.is_zero(after):
        return replace(event, ignored=f"branch {branch} was deleted")
    return event


def merge_request(payload: dict, delivery: str | None) -> SourceEvent:
    attributes = "object_attributes"
    iid = p.number(payload, f"{attributes}.iid")
    action = p.string(payload, f"{attributes}.action", "")
    # The target project is the repository the tasks build; GitLab names it in `target`
    # (and as the hook's `project`).
    repository = f"{attributes}.target" if isinstance(
        p.field(payload, f"{attributes}.target", None), dict) else "project"
    source_id = p.field(payload, f"{attributes}.source_project_id", None)
    target_id = p.field(payload, f"{attributes}.target_project_id", None)
    event = SourceEvent(
        NAME, "pull_request", _urls(payload, repository),
        branch=p.branch(p.string(payload, f"{attributes}.source_branch"),
                        f"{attributes}.source_branch"),
        commit=p.sha(payload, f"{attributes}.last_commit.id"),
        target_branch=p.branch(p.string(payload, f"{attributes}.target_branch"),
                               f"{attributes}.target_branch"),
        pull_request=iid, fetch_ref=f"refs/merge-requests/{iid}/head",
        from_fork=source_id != target_id,
        default_branch=p.string(payload, f"{repository}.default_branch", None),
        delivery=delivery)
    if action in ("open", "reopen"):
        return event
    if action == "update":
        # `oldrev` is there only when the update pushed commits (not a title or label edit).
        if p.field(payload, f"{attributes}.oldrev", None) is not None:
            return event
        return replace(event, ignored="merge request updated without new commits")
    return replace(event, ignored=f"merge request action {action[:80]!r} does not build")
