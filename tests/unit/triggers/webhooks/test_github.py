"""GitHub's published example deliveries (octokit/webhooks) read into SourceEvents."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

from basewatch.triggers.source_events import SourceEvent
from basewatch.triggers.webhooks import github
from basewatch.triggers.webhooks.payload import MalformedPayloadError, UnknownEventError
from tests.unit.triggers.webhooks.fixtures import body, encoded, payload

URLS = ("https://github.com/Codertocat/Hello-World.git",
        "git@github.com:Codertocat/Hello-World.git",
        "https://github.com/Codertocat/Hello-World",
        "git://github.com/Codertocat/Hello-World.git")
DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"


def headers(event: str, **more: str) -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": DELIVERY,
            "Content-Type": "application/json", **more}


def test_push_to_a_new_branch():
    [event] = github.parse(headers("push"), body("github-push.json"))
    assert event == SourceEvent(
        "github", "push", URLS, branch="master",
        commit="6113728f27ae82c7b1a177c8d03f9e96e0adf246", default_branch="master",
        delivery=DELIVERY)


def test_a_deleted_tag_is_ignored():
    [event] = github.parse(headers("push"), body("github-push-tag-deleted.json"))
    assert (event.kind, event.branch, event.commit) == ("push", None, None)
    assert event.ignored == "'refs/tags/simple-tag' is a tag"


def test_a_deleted_branch_is_ignored():
    value = payload("github-push.json")
    value.update(after="0" * 40, deleted=True, created=False)
    [event] = github.parse(headers("push"), encoded(value))
    assert (event.branch, event.commit, event.ignored) == ("master", None,
                                                         "branch master was deleted")


@pytest.mark.parametrize("name", ["github-pull_request-opened.json",
                                  "github-pull_request-synchronize.json"])
def test_pull_request_opened_and_synchronize_build_the_head(name):
    [event] = github.parse(headers("pull_request"), body(name))
    assert event == SourceEvent(
        "github", "pull_request", URLS, branch="changes",
        commit="ec26c3e57ca3a959ca5aad62de7213c562f8c821", target_branch="master",
        pull_request=2, fetch_ref="refs/pull/2/head", from_fork=False, default_branch="master",
        delivery=DELIVERY)


def test_a_reopened_pull_request_builds():
    value = dict(payload("github-pull_request-opened.json"), action="reopened")
    [event] = github.parse(headers("pull_request"), encoded(value))
    assert event.ignored is None


@pytest.mark.parametrize("action", ["closed", "edited", "labeled", "assigned"])
def test_other_pull_request_actions_are_ignored_with_their_reason(action):
    value = dict(payload("github-pull_request-opened.json"), action=action)
    [event] = github.parse(headers("pull_request"), encoded(value))
    assert event.ignored == f"pull request action {action!r} does not build"
    assert event.commit == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


def test_a_pull_request_from_a_fork_says_so_and_is_fetched_from_the_base():
    value = payload("github-pull_request-opened.json")
    head = value["pull_request"]["head"]
    head["repo"] = dict(head["repo"], id=999, clone_url="https://github.com/fork/x.git")
    [event] = github.parse(headers("pull_request"), encoded(value))
    assert event.from_fork
    assert event.repository_urls == URLS
    assert event.fetch_ref == "refs/pull/2/head"
    head["repo"] = None  # the fork was deleted
    [event] = github.parse(headers("pull_request"), encoded(value))
    assert event.from_fork


def test_ping():
    [event] = github.parse(headers("ping"), body("github-ping.json"))
    assert (event.kind, event.delivery) == ("ping", DELIVERY)
    assert event.repository_urls[0] == "https://github.com/Octocoders/Hello-World.git"


def test_the_form_encoded_body_reads_as_the_json_one():
    form = urlencode({"payload": body("github-push.json").decode()}).encode()
    assert github.parse(headers("push", **{"Content-Type": "application/x-www-form-urlencoded"}),
                        form) == github.parse(headers("push"), body("github-push.json"))


def test_an_unknown_event_is_its_own_error():
    with pytest.raises(UnknownEventError, match="^github event 'issues' is not one basewatch "
                                                "builds on$"):
        github.parse(headers("issues"), b"{}")


@pytest.mark.parametrize("given, message", [
    ({"Content-Type": "application/json"}, "the X-GitHub-Event header is missing"),
])
def test_a_missing_event_header_is_malformed(given, message):
    with pytest.raises(MalformedPayloadError, match=f"^{message}$"):
        github.parse(given, body("github-push.json"))


@pytest.mark.parametrize("change, message", [
    (lambda v: v.pop("after"), "after: missing"),
    (lambda v: v.update(after="6113728"), "after: expected a full commit SHA"),
    (lambda v: v.update(ref=5), "ref: expected a string, got a number"),
    (lambda v: v.update(ref="refs/heads/--upload-pack=x y"), "ref: not a valid branch name"),
    (lambda v: v.pop("repository"), "repository.clone_url: missing"),
    (lambda v: v["repository"].update(clone_url=[1]),
     "repository.clone_url: expected a string, got a list"),
])
def test_a_malformed_push_names_what_is_wrong(change, message):
    value = payload("github-push.json")
    change(value)
    with pytest.raises(MalformedPayloadError, match=f"^{message}"):
        github.parse(headers("push"), encoded(value))


def test_a_malformed_pull_request_names_what_is_wrong():
    value = payload("github-pull_request-opened.json")
    del value["pull_request"]["head"]["sha"]
    with pytest.raises(MalformedPayloadError, match="^pull_request.head.sha: missing$"):
        github.parse(headers("pull_request"), encoded(value))
    with pytest.raises(MalformedPayloadError, match="^number: expected a positive whole"):
        github.parse(headers("pull_request"), encoded(dict(value, number="2")))


def test_signature_is_sha256_of_the_raw_body():
    vector = {"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c4"
                                     "6f4379c8b043e17"}
    assert github.offered(vector)
    assert github.verify(vector, b"Hello, World!", "It's a Secret to Everybody")
    assert not github.verify(vector, b"Hello, World!?", "It's a Secret to Everybody")
    assert not github.verify(vector, b"Hello, World!", "another secret")
    bare = {"X-Hub-Signature-256": vector["X-Hub-Signature-256"].removeprefix("sha256=")}
    assert not github.verify(bare, b"Hello, World!", "It's a Secret to Everybody")
    assert not github.offered({"X-Hub-Signature": "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59"})
