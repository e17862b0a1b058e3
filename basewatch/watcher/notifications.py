"""Registry push notifications: which pushes in a webhook body name a tag worth re-checking.

Pure parsing, no HTTP. Covers CNCF distribution event envelopes and the webhooks of Docker Hub,
Harbor (Default and CloudEvents formats), Azure Container Registry and Quay. A notification
never starts a build: the daemon only re-checks the digest the tag points at.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple
from urllib.parse import urlsplit

from basewatch.errors import BasewatchError
from basewatch.oci.reference import TAG, is_registry_host, is_repository

DISTRIBUTION_EVENTS = "application/vnd.docker.distribution.events.v1+json"
CLOUDEVENTS = "application/cloudevents+json"
DOCKER_HUB = "docker.io"

# Only manifests and indexes carry tags; blobs (application/octet-stream, layers, configs) do not.
MANIFEST_MEDIA_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})
# The tag grammar of github.com/distribution/reference. Harbor puts the digest in `tag` for a
# push by digest; "sha256:..." does not match, so that push counts as untagged.
# Harbor 2 Default format, Harbor 2 CloudEvents, Harbor 1.x. A tuple: `type` may be any JSON.
_HARBOR_PUSH_TYPES = ("PUSH_ARTIFACT", "harbor.artifact.pushed", "pushImage")
# Ids are only compared, never shown. Providers send UUIDs; a longer id is kept as its hash, so
# the ids remembered against redeliveries stay small whatever a body holds.
MAX_EVENT_ID_LENGTH = 128

Payload = dict[str, Any]


class NotificationError(BasewatchError):
    """A webhook body is not JSON or not a notification shape basewatch knows."""


@dataclass(frozen=True)
class PushNotification:
    """A tag that a registry says was pushed."""

    id: str  # the provider's event id, or a hash of the fields below when it sends none
    source: str  # "distribution" | "dockerhub" | "harbor" | "acr" | "quay"
    registry: str | None  # host as the event names it; None when it does not
    repository: str  # as the registry names it: "library/alpine" on Docker Hub
    tag: str
    digest: str | None


Parsed = tuple[list[PushNotification], int]


class Notifications(NamedTuple):
    pushes: list[PushNotification]  # tag pushes to re-check
    ignored: int  # events that are no tag push (pulls, deletes, pushes by digest...)
    rejected: list[PushNotification]  # pushes of a repository that is no repository name


def parse_notifications(content_type: str, body: bytes) -> Notifications:
    """The pushes in a body; NotificationError if the body is unusable."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotificationError(f"notification body is not JSON: {error}") from None
    except RecursionError:
        raise NotificationError("notification body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise NotificationError("notification body must be a JSON object")
    media_type = content_type.partition(";")[0].strip().lower()
    pushes, ignored = _parser_for(media_type, payload)(payload)
    # What is left of a push is shown in the log and matched against references: a name that
    # no reference can have (a newline, upper case...) is refused rather than carried along.
    rejected = [push for push in pushes if not is_repository(push.repository)]
    if rejected:
        pushes = [push for push in pushes if is_repository(push.repository)]
    return Notifications(pushes, ignored, rejected)


def _parser_for(media_type: str, payload: Payload) -> Callable[[Payload], Parsed]:
    if "events" in payload:
        return _parse_distribution
    if media_type == DISTRIBUTION_EVENTS:
        raise NotificationError(f"a {DISTRIBUTION_EVENTS} body must have an \"events\" list")
    if "push_data" in payload and "repository" in payload:
        return _parse_docker_hub
    if "event_data" in payload and "type" in payload:
        return _parse_harbor
    if "data" in payload and str(payload.get("type", "")).startswith("harbor."):
        return _parse_harbor_cloudevent
    if "action" in payload and "target" in payload:
        return _parse_acr
    if "docker_url" in payload:
        return _parse_quay
    raise NotificationError(
        "unrecognised notification: expected a CNCF distribution envelope (\"events\") or a "
        "Docker Hub, Harbor, ACR or Quay push webhook")


def _parse_distribution(payload: Payload) -> Parsed:
    events = payload["events"]
    if not isinstance(events, list):
        raise NotificationError("\"events\" must be a list")
    pushes = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise NotificationError(f"events[{index}] must be an object")
        push = _registry_event("distribution", event, f"events[{index}]")
        if push is not None:
            pushes.append(push)
    return pushes, len(events) - len(pushes)


def _parse_acr(payload: Payload) -> Parsed:
    # ACR posts one event per request, in the same shape as a distribution event.
    push = _registry_event("acr", payload, "body")
    return ([push], 0) if push is not None else ([], 1)


def _registry_event(source: str, event: Payload, where: str) -> PushNotification | None:
    """The push in a distribution-shaped event, or None when the event does not count."""
    if event.get("action") != "push":
        return None
    target = _object(event, "target", where)
    media_type = _text(target, "mediaType", f"{where}.target")
    tag = _text(target, "tag", f"{where}.target")
    # Only a manifest can be tagged, so a tag without a media type is still a manifest push.
    if not _is_tag(tag) or (media_type is not None and media_type not in MANIFEST_MEDIA_TYPES):
        return None
    repository = _required_text(target, "repository", f"{where}.target")
    digest = _text(target, "digest", f"{where}.target")
    request = event.get("request")
    host = _text(request, "host", f"{where}.request") if isinstance(request, dict) else None
    registry = _host(host) if host else _host(_text(target, "url", f"{where}.target"))
    event_id = _bounded_id(_text(event, "id", where)) or _derived_id(
        source, repository, tag, digest, event.get("timestamp"))
    return PushNotification(event_id, source, registry, repository, tag, digest)


def _parse_docker_hub(payload: Payload) -> Parsed:
    push_data = _object(payload, "push_data", "body")
    repository = _object(payload, "repository", "body")
    tag = _text(push_data, "tag", "push_data")
    if not _is_tag(tag):
        return [], 1
    name = _required_text(repository, "repo_name", "repository")
    if "/" not in name:
        name = "library/" + name  # official images: "alpine" is library/alpine
    event_id = _derived_id("dockerhub", name, tag, None, push_data.get("pushed_at"))
    return [PushNotification(event_id, "dockerhub", DOCKER_HUB, name, tag, None)], 0


def _parse_harbor(payload: Payload) -> Parsed:
    if payload["type"] not in _HARBOR_PUSH_TYPES:
        return [], 1
    data = _object(payload, "event_data", "body")
    return _harbor_resources(data, "event_data", None, payload.get("occur_at"))


def _parse_harbor_cloudevent(payload: Payload) -> Parsed:
    if payload["type"] not in _HARBOR_PUSH_TYPES:
        return [], 1
    data = _object(payload, "data", "body")
    return _harbor_resources(data, "data", _bounded_id(_text(payload, "id", "body")),
                             payload.get("time"))


def _harbor_resources(data: Payload, where: str, event_id: str | None,
                      timestamp: object) -> Parsed:
    resources = data.get("resources")
    if not isinstance(resources, list):
        raise NotificationError(f"{where}.resources must be a list")
    repository = _required_text(_object(data, "repository", where), "repo_full_name",
                                f"{where}.repository")
    pushes = []
    for index, resource in enumerate(resources):
        at = f"{where}.resources[{index}]"
        if not isinstance(resource, dict):
            raise NotificationError(f"{at} must be an object")
        tag = _text(resource, "tag", at)
        if not _is_tag(tag):
            continue
        digest = _text(resource, "digest", at)
        registry = _host(_text(resource, "resource_url", at))
        if event_id is None:
            push_id = _derived_id("harbor", repository, tag, digest, timestamp)
        else:
            # One CloudEvent id covers every artifact in it; each push needs an id of its own.
            push_id = event_id if len(resources) == 1 else f"{event_id}#{index}"
        pushes.append(PushNotification(push_id, "harbor", registry, repository, tag, digest))
    return pushes, len(resources) - len(pushes)


def _parse_quay(payload: Payload) -> Parsed:
    tags = payload.get("updated_tags")
    if not tags:
        return [], 1  # another Quay event (a build, a scan): it names no pushed tag
    if not isinstance(tags, list):
        raise NotificationError("updated_tags must be a list")
    repository = _required_text(payload, "repository", "body")
    registry = _host(_text(payload, "docker_url", "body"))
    pushes = [
        # Quay sends neither an event id nor a time, so a hash would make every later push of
        # the same tag look like a retry; a fresh id costs at most one redundant re-check.
        PushNotification(f"quay-{uuid.uuid4()}", "quay", registry, repository, tag, None)
        for tag in tags if isinstance(tag, str) and _is_tag(tag)]
    return pushes, len(tags) - len(pushes)


def _is_tag(tag: str | None) -> bool:
    return tag is not None and TAG.fullmatch(tag) is not None


def _host(url: str | None) -> str | None:
    """The host of `https://host/v2/...`, of Harbor's and Quay's scheme-less `host/repo`, or
    a bare `host:port`; None when that is not a host (it is only shown, never used)."""
    if not url:
        return None
    try:
        host = urlsplit(url).netloc if "://" in url else url.partition("/")[0]
    except ValueError:  # urlsplit: an invalid IPv6 literal
        return None
    return host if is_registry_host(host) else None


def _bounded_id(event_id: str | None) -> str | None:
    if event_id is None or len(event_id) <= MAX_EVENT_ID_LENGTH:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


def _derived_id(source: str, repository: str, tag: str, digest: str | None,
                timestamp: object) -> str:
    fields = json.dumps([source, repository, tag, digest, timestamp], default=str)
    return "sha256:" + hashlib.sha256(fields.encode()).hexdigest()


def _object(mapping: Payload, key: str, where: str) -> Payload:
    value = mapping.get(key)
    if not isinstance(value, dict):
        raise NotificationError(f"{where}.{key} must be an object")
    return value


def _text(mapping: Payload, key: str, where: str) -> str | None:
    value = mapping.get(key)
    if value is not None and not isinstance(value, str):
        raise NotificationError(f"{where}.{key} must be a string")
    return value


def _required_text(mapping: Payload, key: str, where: str) -> str:
    value = _text(mapping, key, where)
    if not value:
        raise NotificationError(f"{where}.{key} is missing")
    return value


class RecentEvents:
    """Remembers the last `size` event ids, oldest forgotten first, to drop redelivered events."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._ids: dict[str, None] = {}  # insertion-ordered: the first key is the oldest

    def first_time(self, event_id: str) -> bool:
        """True, and remember the id, unless it was seen recently."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]
        return True

    def forget(self, event_id: str) -> None:
        """Let a redelivery of this event through again (its handling failed)."""
        self._ids.pop(event_id, None)

    def __len__(self) -> int:
        return len(self._ids)
