"""Property tests for parse_notifications: any bytes, any JSON and any variation of each
provider's payload give pushes fit to log and match, or one NotificationError; never another
exception. tests/security/test_webhooks.py runs these under a memory limit too."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from basewatch.watcher.notifications import (CLOUDEVENTS, DISTRIBUTION_EVENTS,
                                             MAX_EVENT_ID_LENGTH, NotificationError,
                                             parse_notifications)
from basewatch.oci.reference import TAG, is_registry_host, is_repository

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SETTINGS = settings(max_examples=300, deadline=1000,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CONTENT_TYPES = st.sampled_from(["", "application/json", DISTRIBUTION_EVENTS, CLOUDEVENTS,
                                 f"{DISTRIBUTION_EVENTS}; charset=utf-8", "text/plain"])
TEXT = st.text(max_size=40) | st.sampled_from(
    ["push", "pull", "latest", "1.0", "library/alpine", "base\nforged", "Upper",
     "sha256:" + "a" * 64, "registry.local:5000", "http://h/v2/x", "PUSH_ARTIFACT",
     "harbor.artifact.pushed", "x" * 5000, "application/vnd.oci.image.manifest.v1+json"])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(TEXT, inner, max_size=4), max_leaves=30)
PAYLOADS = [json.loads(path.read_bytes()) for path in sorted(FIXTURES.glob("*.json"))]


def check(content_type: str, body: bytes) -> None:
    try:
        pushes, ignored, rejected = parse_notifications(content_type, body)
    except NotificationError as error:
        assert "\n" not in str(error)
        return
    assert ignored >= 0
    for push in pushes:
        assert is_repository(push.repository) and TAG.fullmatch(push.tag)
        assert push.registry is None or is_registry_host(push.registry)
        assert 0 < len(push.id) <= MAX_EVENT_ID_LENGTH
    for push in rejected:
        assert not is_repository(push.repository)


@SETTINGS
@given(CONTENT_TYPES, st.binary(max_size=2000))
def test_any_bytes(content_type, body):
    check(content_type, body)


@SETTINGS
@given(CONTENT_TYPES, JSON)
def test_any_json(content_type, value):
    check(content_type, json.dumps(value).encode())


def _paths(value, prefix=()):
    """Every path to a value inside a JSON document."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, prefix + (index,))


@st.composite
def varied_payloads(draw):
    """A provider's published payload (or a distribution envelope of it) with some values
    replaced by anything."""
    payload = copy.deepcopy(draw(st.sampled_from(PAYLOADS)))
    if draw(st.booleans()):
        payload = {"events": [payload, copy.deepcopy(payload)]}
    paths = [path for path in _paths(payload) if path]
    for path in draw(st.lists(st.sampled_from(paths), max_size=4)):
        parent = payload
        try:
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = draw(JSON)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed that path
    return payload


@SETTINGS
@given(CONTENT_TYPES, varied_payloads())
def test_any_variation_of_a_providers_payload(content_type, payload):
    check(content_type, json.dumps(payload).encode())
