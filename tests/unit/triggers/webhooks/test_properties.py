"""Property tests for the source webhook parsers: any bytes, any JSON and any variation of each
provider's published example give SourceEvents fit to hand to git, or one WebhookError on one
line; never another exception."""
from __future__ import annotations

import copy
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from basewatch.triggers.webhooks import azure_devops, gitea, github, gitlab
from basewatch.triggers.webhooks.payload import WebhookError
from tests.unit.triggers.webhooks.fixtures import payload

SETTINGS = settings(max_examples=200, deadline=1000,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TEXT = st.text(max_size=30) | st.sampled_from(
    ["refs/heads/main", "refs/tags/v1", "refs/heads/-x", "opened", "synchronize", "open",
     "update", "active", "a" * 40, "0" * 40, "main\nforged", "x" * 3000, "git.push"])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(TEXT, inner, max_size=3), max_leaves=20)
CASES = [
    (github, {"X-GitHub-Event": "push"}, "github-push.json"),
    (github, {"X-GitHub-Event": "pull_request"}, "github-pull_request-opened.json"),
    (github, {"X-GitHub-Event": "ping"}, "github-ping.json"),
    (gitlab, {"X-Gitlab-Event": "Push Hook"}, "gitlab-push-hook.json"),
    (gitlab, {"X-Gitlab-Event": "Merge Request Hook"}, "gitlab-merge-request-hook.json"),
    (azure_devops, {}, "azure-devops-git.push.json"),
    (azure_devops, {}, "azure-devops-git.pullrequest.created.json"),
    (gitea, {"X-Gitea-Event": "push"}, "gitea-push.json"),
]
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def check(provider, headers: dict, body: bytes) -> None:
    try:
        events = provider.parse(headers, body)
    except WebhookError as error:
        assert "\n" not in str(error) and len(str(error)) < 300
        return
    for event in events:
        assert event.commit is None or SHA.fullmatch(event.commit)
        for name in (event.branch, event.target_branch):
            assert name is None or (name.isprintable() and " " not in name
                                    and not name.startswith("-"))
        for url in event.repository_urls:
            assert url.isprintable() and " " not in url
        assert event.ignored is None or "\n" not in event.ignored
        if event.kind != "ping":
            assert event.repository_urls
        if event.ignored is None and event.kind != "ping":
            assert event.commit is not None and event.branch is not None


@SETTINGS
@given(st.sampled_from(CASES), st.binary(max_size=1000))
def test_any_bytes(case, body):
    provider, headers, _ = case
    check(provider, headers, body)


@SETTINGS
@given(st.sampled_from(CASES), JSON)
def test_any_json(case, value):
    provider, headers, _ = case
    check(provider, headers, json.dumps(value).encode())


def _paths(value, prefix=()):
    yield prefix
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, prefix + (key,))


@SETTINGS
@given(st.data())
def test_any_field_of_a_published_example_replaced(data):
    provider, headers, name = data.draw(st.sampled_from(CASES))
    value = payload(name)
    path = data.draw(st.sampled_from([p for p in _paths(value) if p]))
    changed = copy.deepcopy(value)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(JSON)
    check(provider, headers, json.dumps(changed).encode())
