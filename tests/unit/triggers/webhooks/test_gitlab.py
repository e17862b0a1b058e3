"""GitLab's published example deliveries (its webhook events page) read into SourceEvents."""
from __future__ import annotations

import pytest

from basewatch.triggers.source_events import SourceEvent
from basewatch.triggers.webhooks import gitlab
from basewatch.triggers.webhooks.payload import MalformedPayloadError, UnknownEventError
from tests.unit.triggers.webhooks.fixtures import body, encoded, payload

KEY = "f5e5f430-f57b-4e6e-9fac-d9128cd7232f"
TARGET = ("http://example.com/awesome_space/awesome_project.git",
          "git@example.com:awesome_space/awesome_project.git",
          "http://example.com/awesome_space/awesome_project")


def headers(event: str) -> dict[str, str]:
    return {"X-Gitlab-Event": event, "X-Gitlab-Token": "t", "Idempotency-Key": KEY,
            "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e"}


def test_push_hook():
    [event] = gitlab.parse(headers("Push Hook"), body("gitlab-push-hook.json"))
    assert event == SourceEvent(
        "gitlab", "push", ("http://example.com/mike/diaspora.git",
                           "git@example.com:mike/diaspora.git", "http://example.com/mike/diaspora"),
        branch="master", commit="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        default_branch="master", delivery=KEY)


def test_the_event_uuid_is_the_delivery_before_gitlab_17_4():
    given = {k: v for k, v in headers("Push Hook").items() if k != "Idempotency-Key"}
    [event] = gitlab.parse(given, body("gitlab-push-hook.json"))
    assert event.delivery == "13792a34-cac6-4fda-95a8-c58e00a3954e"


def test_tag_push_and_deleted_branch_are_ignored():
    value = dict(payload("gitlab-push-hook.json"), ref="refs/tags/v1.0.0")
    [event] = gitlab.parse(headers("Tag Push Hook"), encoded(value))
    assert event.ignored == "'refs/tags/v1.0.0' is a tag"
    value = dict(payload("gitlab-push-hook.json"), after="0" * 40, checkout_sha=None)
    [event] = gitlab.parse(headers("Push Hook"), encoded(value))
    assert (event.branch, event.commit, event.ignored) == ("master", None,
                                                         "branch master was deleted")


def test_merge_request_opened_builds_the_source_head_from_the_target_project():
    [event] = gitlab.parse(headers("Merge Request Hook"), body("gitlab-merge-request-hook.json"))
    assert event == SourceEvent(
        "gitlab", "pull_request", TARGET, branch="ms-viewport",
        commit="da1560886d4f094c3e6c9ef40349f7d38b5d27d7", target_branch="master",
        pull_request=1, fetch_ref="refs/merge-requests/1/head", from_fork=False,
        default_branch="master", delivery=KEY)


def with_attributes(**changes) -> bytes:
    value = payload("gitlab-merge-request-hook.json")
    value["object_attributes"].update(changes)
    return encoded(value)


def test_reopen_and_an_update_with_new_commits_build():
    for changes in ({"action": "reopen"}, {"action": "update", "oldrev": "b" * 40}):
        [event] = gitlab.parse(headers("Merge Request Hook"), with_attributes(**changes))
        assert event.ignored is None


@pytest.mark.parametrize("changes, reason", [
    ({"action": "update"}, "merge request updated without new commits"),
    ({"action": "close"}, "merge request action 'close' does not build"),
    ({"action": "merge"}, "merge request action 'merge' does not build"),
    ({"action": "approved"}, "merge request action 'approved' does not build"),
])
def test_other_actions_are_ignored(changes, reason):
    [event] = gitlab.parse(headers("Merge Request Hook"), with_attributes(**changes))
    assert event.ignored == reason


def test_a_merge_request_from_another_project_is_from_a_fork():
    [event] = gitlab.parse(headers("Merge Request Hook"), with_attributes(source_project_id=15))
    assert event.from_fork
    assert event.repository_urls == TARGET


def test_unknown_event_and_missing_header():
    with pytest.raises(UnknownEventError, match="'Issue Hook'"):
        gitlab.parse(headers("Issue Hook"), b"{}")
    with pytest.raises(MalformedPayloadError, match="^the X-Gitlab-Event header is missing$"):
        gitlab.parse({"X-Gitlab-Token": "t"}, body("gitlab-push-hook.json"))


def test_a_merge_request_without_its_last_commit_is_malformed():
    value = payload("gitlab-merge-request-hook.json")
    del value["object_attributes"]["last_commit"]
    with pytest.raises(MalformedPayloadError,
                       match="^object_attributes.last_commit.id: missing$"):
        gitlab.parse(headers("Merge Request Hook"), encoded(value))


def test_the_token_is_compared_as_is():
    assert gitlab.offered({"X-Gitlab-Token": "s3cret"})
    assert gitlab.verify({"X-Gitlab-Token": "s3cret"}, b"", "s3cret")
    assert not gitlab.verify({"X-Gitlab-Token": "s3cret "}, b"", "s3cret")
    assert not gitlab.verify({}, b"", "s3cret")
    assert not gitlab.offered({"X-Gitlab-Token": ""})
