"""Azure DevOps's published service hook examples read into SourceEvents."""
from __future__ import annotations

import base64

import pytest

from basewatch.triggers.source_events import SourceEvent
from basewatch.triggers.webhooks import azure_devops
from basewatch.triggers.webhooks.payload import MalformedPayloadError, UnknownEventError
from tests.unit.triggers.webhooks.fixtures import body, encoded, payload

PUSH = "azure-devops-git.push.json"
PULL = "azure-devops-git.pullrequest.created.json"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_push():
    [event] = azure_devops.parse({}, body(PUSH))
    assert event == SourceEvent(
        "azure-devops", "push",
        ("https://dev.azure.com/fabrikam-fiber-inc/DefaultCollection/_git/Fabrikam-Fiber-Git",),
        branch="master", commit="33b55f7cb7e7e245323987634f960cf4a6e6bc74",
        default_branch="master", delivery="03c164c2-8912-4d5e-8009-3707d5f83734")


def test_a_push_of_several_refs_is_one_event_each():
    value = payload(PUSH)
    value["resource"]["repository"]["sshUrl"] = "git@ssh.dev.azure.com:v3/f/F/F"
    value["resource"]["refUpdates"] += [
        {"name": "refs/tags/v1", "oldObjectId": "0" * 40, "newObjectId": "c" * 40},
        {"name": "refs/heads/old", "oldObjectId": "c" * 40, "newObjectId": "0" * 40},
        {"name": "refs/heads/dev", "oldObjectId": "c" * 40, "newObjectId": "d" * 40}]
    events = azure_devops.parse({}, encoded(value))
    assert [(e.branch, e.commit, e.ignored) for e in events] == [
        ("master", "33b55f7cb7e7e245323987634f960cf4a6e6bc74", None),
        (None, "c" * 40, "'refs/tags/v1' is a tag"),
        ("old", None, "branch old was deleted"),
        ("dev", "d" * 40, None)]
    assert events[0].repository_urls[1] == "git@ssh.dev.azure.com:v3/f/F/F"


def test_pull_request_created_builds_the_source_commit_through_the_merge_ref():
    [event] = azure_devops.parse({}, body(PULL))
    assert event == SourceEvent(
        "azure-devops", "pull_request",
        ("https://dev.azure.com/fabrikam/DefaultCollection/_git/Fabrikam",),
        branch="mytopic", commit="53d54ac915144006c2c9e90d2c7d3880920db49c",
        target_branch="master", pull_request=1, fetch_ref="refs/pull/1/merge",
        from_fork=False, default_branch="master",
        delivery="2ab4e3d3-b7a6-425e-92b1-5a9982c1269e")


def test_pull_request_updated_and_from_a_fork():
    value = dict(payload(PULL), eventType="git.pullrequest.updated")
    value["resource"]["forkSource"] = {"name": "refs/heads/mytopic",
                                       "repository": {"id": "x", "name": "Fork"}}
    [event] = azure_devops.parse({}, encoded(value))
    assert (event.kind, event.from_fork, event.ignored) == ("pull_request", True, None)


@pytest.mark.parametrize("status", ["completed", "abandoned"])
def test_a_pull_request_no_longer_active_is_ignored(status):
    value = dict(payload(PULL), eventType="git.pullrequest.updated")
    value["resource"]["status"] = status
    [event] = azure_devops.parse({}, encoded(value))
    assert event.ignored == f"pull request is {status!r}, not active"


def test_unknown_and_malformed():
    with pytest.raises(UnknownEventError, match="'workitem.created'"):
        azure_devops.parse({}, encoded(dict(payload(PUSH), eventType="workitem.created")))
    with pytest.raises(MalformedPayloadError, match="^eventType: missing$"):
        azure_devops.parse({}, b'{"id": "x"}')
    value = payload(PUSH)
    value["resource"]["refUpdates"][0]["newObjectId"] = "33b55f7"
    with pytest.raises(MalformedPayloadError, match=r"^resource.refUpdates\[0\].newObjectId: "
                                                    "expected a full commit SHA"):
        azure_devops.parse({}, encoded(value))
    value["resource"]["refUpdates"] = []
    with pytest.raises(MalformedPayloadError, match="^resource.refUpdates: expected a list"):
        azure_devops.parse({}, encoded(value))


def test_basic_auth_password_is_the_secret_whatever_the_user():
    for user in ("basewatch", ""):
        assert azure_devops.verify(basic(user, "s3cret"), b"", "s3cret")
    assert azure_devops.offered(basic("u", "s3cret"))
    assert not azure_devops.verify(basic("s3cret", "wrong"), b"", "s3cret")
    assert not azure_devops.verify({"Authorization": "Bearer s3cret"}, b"", "s3cret")
    assert not azure_devops.offered({"Authorization": "Basic not-base64!"})
    assert not azure_devops.offered({"Authorization": "Basic jetón"})
    assert not azure_devops.offered(basic("user-only", ""))
