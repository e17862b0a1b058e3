"""Gitea's and Forgejo's published push examples, and pull request bodies built as Gitea's
PullRequestPayload is (modules/structs/hook.go), since no full example is published."""
from __future__ import annotations

import pytest

from basewatch.triggers.source_events import SourceEvent
from basewatch.triggers.webhooks import gitea
from basewatch.triggers.webhooks.payload import MalformedPayloadError, UnknownEventError
from tests.unit.triggers.webhooks.fixtures import body, encoded, payload

DELIVERY = "f6266f16-1bf3-46a5-9ea4-602e06ead473"
HEAD, BASE = "c" * 40, "b" * 40


def gitea_headers(event: str) -> dict[str, str]:
    return {"X-Gitea-Event": event, "X-Gitea-Delivery": DELIVERY,
            "X-GitHub-Event": event, "X-Gogs-Event": event}


def forgejo_headers(event: str) -> dict[str, str]:
    return {"X-Forgejo-Event": event, "X-Forgejo-Delivery": DELIVERY, **gitea_headers(event)}


def repository(owner: str, repo_id: int) -> dict:
    return {"id": repo_id, "name": "webhooks", "full_name": f"{owner}/webhooks",
            "html_url": f"http://localhost:3000/{owner}/webhooks",
            "ssh_url": f"ssh://gitea@localhost:2222/{owner}/webhooks.git",
            "clone_url": f"http://localhost:3000/{owner}/webhooks.git",
            "default_branch": "master"}


def pull_request(action: str = "opened", head_owner: str = "gitea", head_id: int = 140) -> dict:
    base = repository("gitea", 140)
    return {"action": action, "number": 12, "pull_request": {
        "id": 1, "number": 12, "state": "open", "merged": False,
        "head": {"label": "feature", "ref": "feature", "sha": HEAD, "repo_id": head_id,
                 "repo": repository(head_owner, head_id)},
        "base": {"label": "master", "ref": "master", "sha": BASE, "repo_id": 140,
                 "repo": base}},
        "repository": base, "commit_id": ""}


def test_gitea_push():
    [event] = gitea.parse(gitea_headers("push"), body("gitea-push.json"))
    assert event == SourceEvent(
        "gitea", "push", ("http://localhost:3000/gitea/webhooks.git",
                          "ssh://gitea@localhost:2222/gitea/webhooks.git",
                          "http://localhost:3000/gitea/webhooks"),
        branch="develop", commit="bffeb74224043ba2feb48d137756c8a9331c449a",
        default_branch="master", delivery=DELIVERY)


def test_forgejo_push_is_told_apart_by_its_headers():
    [event] = gitea.parse(forgejo_headers("push"), body("forgejo-push.json"))
    assert (event.provider, event.branch, event.repository_urls[0]) == (
        "forgejo", "develop", "http://localhost:3000/forgejo/webhooks.git")


def test_pull_request_opened_builds_the_head_by_its_pull_ref():
    [event] = gitea.parse(gitea_headers("pull_request"), encoded(pull_request()))
    assert event == SourceEvent(
        "gitea", "pull_request", ("http://localhost:3000/gitea/webhooks.git",
                                  "ssh://gitea@localhost:2222/gitea/webhooks.git",
                                  "http://localhost:3000/gitea/webhooks"),
        branch="feature", commit=HEAD, target_branch="master", pull_request=12,
        fetch_ref="refs/pull/12/head", from_fork=False, default_branch="master",
        delivery=DELIVERY)


@pytest.mark.parametrize("action, ignored", [
    ("synchronized", None), ("reopened", None),
    ("closed", "pull request action 'closed' does not build"),
    ("label_updated", "pull request action 'label_updated' does not build")])
def test_pull_request_actions(action, ignored):
    [event] = gitea.parse(gitea_headers("pull_request"), encoded(pull_request(action)))
    assert event.ignored == ignored


def test_pull_request_from_a_fork():
    [event] = gitea.parse(forgejo_headers("pull_request"),
                          encoded(pull_request(head_owner="someone", head_id=141)))
    assert (event.provider, event.from_fork) == ("forgejo", True)
    assert event.repository_urls[0] == "http://localhost:3000/gitea/webhooks.git"


def test_the_published_pull_request_body_has_no_pull_request_and_is_malformed():
    with pytest.raises(MalformedPayloadError, match="^pull_request.base.repo.id: missing$"):
        gitea.parse(gitea_headers("pull_request"), body("gitea-pull_request-opened.json"))


def test_tag_and_deleted_branch_pushes_are_ignored():
    value = dict(payload("gitea-push.json"), ref="refs/tags/v1")
    [event] = gitea.parse(gitea_headers("push"), encoded(value))
    assert event.ignored == "'refs/tags/v1' is a tag"
    value = dict(payload("gitea-push.json"), after="0" * 40)
    [event] = gitea.parse(gitea_headers("push"), encoded(value))
    assert event.ignored == "branch develop was deleted"


def test_unknown_event_and_missing_header():
    with pytest.raises(UnknownEventError, match="^gitea event 'create'"):
        gitea.parse(gitea_headers("create"), b"{}")
    with pytest.raises(UnknownEventError, match="^forgejo event 'issues'"):
        gitea.parse(forgejo_headers("issues"), b"{}")
    with pytest.raises(MalformedPayloadError, match="X-Gitea-Event .* header is missing"):
        gitea.parse({}, body("gitea-push.json"))


def test_signature_is_the_bare_hex_hmac_in_either_header():
    # GitHub's test vector without its prefix (the fixtures README).
    digest = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    secret, message = "It's a Secret to Everybody", b"Hello, World!"
    assert gitea.verify({"X-Gitea-Signature": digest}, message, secret)
    assert gitea.verify({"X-Forgejo-Signature": digest, "X-Gitea-Signature": digest}, message,
                        secret)
    assert not gitea.verify({"X-Gitea-Signature": "sha256=" + digest}, message, secret)
    assert not gitea.verify({"X-Gitea-Signature": digest}, message, "other")
    # Gitea sends the header empty when the hook has no secret.
    assert not gitea.offered({"X-Gitea-Signature": "", "X-Hub-Signature-256": "sha256="})
