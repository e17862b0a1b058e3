"""Registry notifications: published provider payloads and distribution envelopes → pushes."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from basewatch.watcher.notifications import (DISTRIBUTION_EVENTS, MAX_EVENT_ID_LENGTH,
                                             NotificationError, PushNotification, RecentEvents,
                                             parse_notifications)

# Providers' published example payloads, copied byte for byte from shared/fixtures/webhooks
# (its README names each source), so the suite does not depend on where shared/ is laid.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"

DIGEST = "sha256:" + "1" * 64
INDEX_DIGEST = "sha256:" + "2" * 64
PLATFORM_DIGEST = "sha256:" + "3" * 64
BLOB_DIGEST = "sha256:" + "4" * 64
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HARBOR_FIXTURE_DIGEST = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_bytes())


def parse(payload: dict, content_type: str = "application/json"):
    """(pushes, ignored) of a payload with nothing to reject."""
    pushes, ignored, rejected = parse_notifications(content_type, json.dumps(payload).encode())
    assert rejected == []
    return pushes, ignored


def distribution_event(number: int, action: str, media_type: str, digest: str,
                       tag: str | None = None, repository: str = "library/alpine") -> dict:
    """An event as CNCF distribution 2.8 sends it (docs/notifications.md in distribution)."""
    target = {"mediaType": media_type, "size": 1234, "digest": digest, "length": 1234,
              "repository": repository,
              "url": f"http://registry.local:5000/v2/{repository}/manifests/{digest}"}
    if tag is not None:
        target["tag"] = tag
    return {
        "id": f"0c8c6d2e-6f3a-4a4e-9b1c-00000000000{number}",
        "timestamp": "2024-05-02T10:15:0{number}.123456789Z",
        "action": action,
        "target": target,
        "request": {"id": "6a1d2c84-8a7b-4d0e-8f1a-5b1c3f9e2d10", "addr": "10.0.0.7:51234",
                    "host": "registry.local:5000", "method": "PUT",
                    "useragent": "docker/20.10.24 go/go1.19.8 os/linux arch/amd64"},
        "actor": {"name": "ci"},
        "source": {"addr": "registry-0:5000", "instanceID": "9b2f3c1e-1111-2222-3333-444455556666"},
    }


def test_the_fixture_folder_is_found():
    assert (FIXTURES / "README.md").is_file(), FIXTURES
    # The registries' payloads, and the git providers' that the source triggers' tests read.
    assert {"acr-push.json", "dockerhub-push.json", "harbor-push_artifact.json",
            "harbor-push_artifact-cloudevents.json", "quay-repo_push.json", "github-push.json",
            "gitlab-push-hook.json", "azure-devops-git.push.json"} <= \
        {path.name for path in FIXTURES.glob("*.json")}


# --- published provider payloads -------------------------------------------------------------

def test_acr_push_fixture():
    assert parse(fixture("acr-push.json")) == ([PushNotification(
        id="cb8c3971-9adc-488b-bdd8-43cbb4974ff5", source="acr",
        registry="myregistry.azurecr.io", repository="hello-world", tag="v1",
        digest="sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d")], 0)


def test_acr_events_other_than_push_are_ignored():
    payload = fixture("acr-push.json")
    payload["action"] = "delete"
    assert parse(payload) == ([], 1)


def test_docker_hub_push_fixture():
    pushes, ignored = parse(fixture("dockerhub-push.json"))
    assert ignored == 0
    [push] = pushes
    assert (push.source, push.registry, push.repository, push.tag, push.digest) == (
        "dockerhub", "docker.io", "svendowideit/testhook", "latest", None)


def test_docker_hub_sends_no_event_id_so_one_is_derived_from_the_push():
    payload = fixture("dockerhub-push.json")
    [first], _ = parse(payload)
    [again], _ = parse(payload)
    payload["push_data"]["pushed_at"] += 60
    [later], _ = parse(payload)
    assert first.id == again.id  # a redelivery is recognised
    assert later.id != first.id  # a later push of the same tag is not
    assert first.id.startswith("sha256:") and len(first.id) == len(DIGEST)


def test_docker_hub_official_image_lives_under_library():
    payload = fixture("dockerhub-push.json")
    payload["repository"].update(repo_name="alpine", namespace="library", name="alpine")
    [push], _ = parse(payload)
    assert push.repository == "library/alpine"


def test_docker_hub_namespaced_image_is_kept_as_is():
    payload = fixture("dockerhub-push.json")
    payload["repository"].update(repo_name="user/app", namespace="user", name="app")
    [push], _ = parse(payload)
    assert push.repository == "user/app"


@pytest.mark.parametrize("name", ["harbor-push_artifact.json",
                                  "harbor-push_artifact-cloudevents.json"])
def test_harbor_fixtures_push_by_digest_so_they_are_ignored(name):
    payload = fixture(name)
    data = payload.get("event_data") or payload["data"]
    assert data["resources"][0]["tag"] == HARBOR_FIXTURE_DIGEST  # as published
    assert parse(payload) == ([], 1)


def test_harbor_default_format_with_a_tag():
    payload = fixture("harbor-push_artifact.json")
    payload["event_data"]["resources"][0].update(
        tag="3.19", resource_url="harbor.example.com/harbor/alpine:3.19")
    [push], ignored = parse(payload)
    assert ignored == 0
    assert (push.source, push.registry, push.repository, push.tag, push.digest) == (
        "harbor", "harbor.example.com", "harbor/alpine", "3.19", HARBOR_FIXTURE_DIGEST)
    assert push.id.startswith("sha256:")  # the Default format carries no event id
    assert parse(payload)[0][0].id == push.id


def test_harbor_cloudevent_with_a_tag_keeps_the_event_id():
    payload = fixture("harbor-push_artifact-cloudevents.json")
    payload["data"]["resources"][0]["tag"] = "3.19"
    [push], ignored = parse(payload, "application/cloudevents+json")
    assert ignored == 0
    assert push == PushNotification("66e18103-09c1-41f6-982f-37df223f3eeb", "harbor", "localhost",
                                    "harbor/alpine", "3.19", HARBOR_FIXTURE_DIGEST)


def test_harbor_payload_with_several_artifacts_gives_several_pushes():
    payload = fixture("harbor-push_artifact-cloudevents.json")
    first = payload["data"]["resources"][0]
    payload["data"]["resources"] = [
        dict(first, tag="3.19"),
        dict(first),  # the digest as its tag: a push by digest
        dict(first, tag="latest"),
    ]
    pushes, ignored = parse(payload)
    assert [(p.id, p.tag) for p in pushes] == [
        ("66e18103-09c1-41f6-982f-37df223f3eeb#0", "3.19"),
        ("66e18103-09c1-41f6-982f-37df223f3eeb#2", "latest")]
    assert ignored == 1


@pytest.mark.parametrize("name, event_type", [
    ("harbor-push_artifact.json", "DELETE_ARTIFACT"),
    ("harbor-push_artifact.json", "PULL_ARTIFACT"),
    ("harbor-push_artifact-cloudevents.json", "harbor.artifact.deleted"),
])
def test_harbor_events_other_than_push_are_ignored(name, event_type):
    payload = fixture(name)
    payload["type"] = event_type
    (payload.get("event_data") or payload["data"])["resources"][0]["tag"] = "3.19"
    assert parse(payload) == ([], 1)


def test_quay_push_fixture():
    pushes, ignored = parse(fixture("quay-repo_push.json"))
    assert ignored == 0
    [push] = pushes
    assert (push.source, push.registry, push.repository, push.tag, push.digest) == (
        "quay", "quay.io", "dgangaia/test", "latest", None)


def test_quay_push_of_several_tags_gives_several_pushes():
    payload = fixture("quay-repo_push.json")
    payload["updated_tags"] = ["latest", "1.2", "not a tag"]
    pushes, ignored = parse(payload)
    assert [p.tag for p in pushes] == ["latest", "1.2"]
    assert ignored == 1


def test_quay_pushes_are_never_taken_for_redeliveries():
    # Quay sends no id and no time: the same body is what every later push looks like too.
    payload = fixture("quay-repo_push.json")
    assert parse(payload)[0][0].id != parse(payload)[0][0].id


def test_quay_event_without_tags_is_ignored():
    payload = fixture("quay-repo_push.json")
    del payload["updated_tags"]
    assert parse(payload) == ([], 1)


@pytest.mark.parametrize("name", ["github-push.json", "gitlab-push-hook.json",
                                  "azure-devops-git.push.json"])
def test_source_control_webhooks_are_not_registry_notifications(name):
    with pytest.raises(NotificationError, match="unrecognised notification"):
        parse(fixture(name))


# --- CNCF distribution envelopes -------------------------------------------------------------

def mixed_envelope() -> dict:
    return {"events": [
        distribution_event(1, "push", "application/octet-stream", BLOB_DIGEST),  # a layer
        distribution_event(2, "push", OCI_MANIFEST, PLATFORM_DIGEST),  # per platform, untagged
        distribution_event(3, "push", OCI_INDEX, INDEX_DIGEST, tag="3.19"),
        distribution_event(4, "push", DOCKER_MANIFEST, DIGEST, tag="latest", repository="app"),
        distribution_event(5, "pull", DOCKER_MANIFEST, DIGEST, tag="latest"),
        distribution_event(6, "delete", DOCKER_MANIFEST, DIGEST),
        distribution_event(7, "mount", "application/vnd.oci.image.layer.v1.tar+gzip", BLOB_DIGEST),
    ]}


def test_distribution_envelope_counts_only_tagged_manifest_and_index_pushes():
    pushes, ignored = parse(mixed_envelope(), DISTRIBUTION_EVENTS)
    assert pushes == [
        PushNotification("0c8c6d2e-6f3a-4a4e-9b1c-000000000003", "distribution",
                         "registry.local:5000", "library/alpine", "3.19", INDEX_DIGEST),
        PushNotification("0c8c6d2e-6f3a-4a4e-9b1c-000000000004", "distribution",
                         "registry.local:5000", "app", "latest", DIGEST),
    ]
    assert ignored == 5


def test_distribution_content_type_parameters_do_not_matter():
    content_type = DISTRIBUTION_EVENTS.upper() + "; charset=utf-8"
    assert len(parse(mixed_envelope(), content_type)[0]) == 2


@pytest.mark.parametrize("media_type", [
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.config.v1+json",
    "application/octet-stream",
])
def test_tagged_push_of_something_other_than_a_manifest_is_ignored(media_type):
    envelope = {"events": [distribution_event(1, "push", media_type, BLOB_DIGEST, tag="x")]}
    assert parse(envelope) == ([], 1)


def test_tagged_push_without_a_media_type_is_a_manifest_push():
    payload = fixture("acr-push.json")
    del payload["target"]["mediaType"]
    assert len(parse(payload)[0]) == 1


def test_harbor_style_digest_as_tag_is_no_tag():
    envelope = {"events": [distribution_event(1, "push", OCI_MANIFEST, DIGEST, tag=DIGEST)]}
    assert parse(envelope) == ([], 1)


def test_registry_host_comes_from_the_target_url_when_the_request_is_missing():
    event = distribution_event(1, "push", DOCKER_MANIFEST, DIGEST, tag="1")
    del event["request"]
    [push], _ = parse({"events": [event]})
    assert push.registry == "registry.local:5000"


def test_event_without_an_id_gets_a_stable_derived_one():
    event = distribution_event(1, "push", DOCKER_MANIFEST, DIGEST, tag="1")
    del event["id"]
    [push], _ = parse({"events": [event]})
    assert push.id.startswith("sha256:")
    assert parse({"events": [copy.deepcopy(event)]})[0][0].id == push.id


def test_empty_envelope_is_fine():
    assert parse({"events": []}, DISTRIBUTION_EVENTS) == ([], 0)


# --- bodies that are not notifications -------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"hello": "world"}', "unrecognised notification"),
    (b'{"events": {}}', '"events" must be a list'),
    (b'{"events": ["push"]}', r"events\[0\] must be an object"),
])
def test_unusable_bodies_raise_one_clear_error(body, message):
    with pytest.raises(NotificationError, match=message) as raised:
        parse_notifications("application/json", body)
    assert "\n" not in str(raised.value)


def test_distribution_content_type_without_an_envelope_is_an_error():
    with pytest.raises(NotificationError, match='must have an "events" list'):
        parse(fixture("acr-push.json"), DISTRIBUTION_EVENTS)


def test_a_push_that_names_no_repository_is_an_error():
    event = distribution_event(1, "push", DOCKER_MANIFEST, DIGEST, tag="1")
    del event["target"]["repository"]
    with pytest.raises(NotificationError, match=r"events\[0\]\.target\.repository is missing"):
        parse({"events": [event]})


def test_a_field_of_the_wrong_type_is_named():
    event = distribution_event(1, "push", DOCKER_MANIFEST, DIGEST, tag="1")
    event["target"]["tag"] = 7
    with pytest.raises(NotificationError, match=r"events\[0\]\.target\.tag must be a string"):
        parse({"events": [event]})


# --- de-duplication --------------------------------------------------------------------------

def test_recent_events_report_each_id_once():
    recent = RecentEvents()
    assert recent.first_time("a")
    assert not recent.first_time("a")
    assert recent.first_time("b")


def test_recent_events_forget_the_oldest_beyond_their_bound():
    recent = RecentEvents(size=3)
    for event_id in "abcd":
        assert recent.first_time(event_id)
    assert len(recent) == 3
    assert not recent.first_time("d") and not recent.first_time("b")
    assert recent.first_time("a")  # "a" was the oldest, so it was forgotten


def test_recent_events_can_forget_an_event_whose_handling_failed():
    recent = RecentEvents()
    recent.first_time("a")
    recent.forget("a")
    recent.forget("never seen")
    assert recent.first_time("a")


# --- hostile values --------------------------------------------------------------------------

def test_a_long_event_id_is_kept_as_a_short_hash():
    # Issue 8: 1 MB ids were kept as they came, 10,000 of them.
    event = distribution_event(1, "push", DOCKER_MANIFEST, DIGEST, tag="1")
    event["id"] = "x" * 500_000
    body = json.dumps({"events": [event]}).encode()
    [push], _, _ = parse_notifications(DISTRIBUTION_EVENTS, body)
    assert push.id.startswith("sha256:") and len(push.id) <= MAX_EVENT_ID_LENGTH
    [again], _, _ = parse_notifications(DISTRIBUTION_EVENTS, body)
    assert again.id == push.id  # a redelivery is still recognised
    event["id"] = "x" * MAX_EVENT_ID_LENGTH
    body = json.dumps({"events": [event]}).encode()
    [short], _, _ = parse_notifications(DISTRIBUTION_EVENTS, body)
    assert short.id == event["id"]


def test_a_long_cloudevent_id_is_hashed_before_it_is_numbered():
    payload = fixture("harbor-push_artifact-cloudevents.json")
    payload["id"] = "y" * 10_000
    payload["data"]["resources"] = [dict(payload["data"]["resources"][0], tag=tag)
                                    for tag in ("1", "2")]
    pushes, _ = parse(payload, "application/cloudevents+json")
    assert [len(push.id) <= MAX_EVENT_ID_LENGTH for push in pushes] == [True, True]
    assert pushes[0].id != pushes[1].id


@pytest.mark.parametrize("repository", [
    "base\n2026-12-01 00:00:00,000 ERROR   basewatch.daemon: forged", "Upper/Case", "a" * 256,
    "../etc", "base/", "base:tag", "with space", "tab\there",
])
def test_a_repository_that_is_not_a_reference_is_rejected(repository):
    events = [distribution_event(1, "push", DOCKER_MANIFEST, DIGEST, tag="1",
                                 repository=repository),
              distribution_event(2, "push", DOCKER_MANIFEST, DIGEST, tag="1", repository="ok")]
    pushes, ignored, rejected = parse_notifications(
        DISTRIBUTION_EVENTS, json.dumps({"events": events}).encode())
    assert [push.repository for push in pushes] == ["ok"]
    assert ignored == 0 and [push.repository for push in rejected] == [repository]


@pytest.mark.parametrize("name", ["Bad\nName", "library/Bad Name"])
def test_a_docker_hub_repository_that_is_not_a_reference_is_rejected(name):
    payload = fixture("dockerhub-push.json")
    payload["repository"]["repo_name"] = name
    _, ignored, rejected = parse_notifications("application/json", json.dumps(payload).encode())
    assert (ignored, len(rejected)) == (0, 1)


def test_a_registry_host_that_is_not_a_host_is_dropped():
    event = distribution_event(1, "push", DOCKER_MANIFEST, DIGEST, tag="1")
    event["request"]["host"] = "registry.local\nforged"
    event["target"]["url"] = "http://bad\rhost/v2/x"
    [push], _ = parse({"events": [event]})
    assert push.registry is None

