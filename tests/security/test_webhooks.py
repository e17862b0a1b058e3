"""Hostile registry notifications (issue 8, item 4 and the Low list): event ids cannot fill
memory, and nothing in a payload can forge a line of the daemon's log."""
from __future__ import annotations

import json
import urllib.request

import pytest

from tests.e2e.test_daemon import health, start_daemon, stop
from tests.support.log_lines import json_lines

pytestmark = pytest.mark.e2e

TOKEN = "webhook-test-token"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
FORGED = "2026-12-01 00:00:00,000 ERROR   basewatch.daemon: forged by a webhook"


def event(event_id: str, repository: str) -> dict:
    return {"id": event_id, "action": "push",
            "target": {"mediaType": MANIFEST, "repository": repository, "tag": "1",
                       "digest": "sha256:" + "1" * 64},
            "request": {"host": "registry.local:5000"}}


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/webhooks/registry", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}",
                 "Content-Type": "application/vnd.docker.distribution.events.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return json.load(response)


def test_a_newline_in_a_repository_forges_no_line_of_the_daemon_log(tmp_path, docker_host):
    process, url = start_daemon({"notifications": {"token_env": "NOTIFY_TOKEN"}}, tmp_path,
                                docker_host, env={"NOTIFY_TOKEN": TOKEN})
    try:
        health(url, process)
        answer = post(url, {"events": [event("e1", "base"),
                                       event("e2", f"base\n{FORGED}"),
                                       event("e3", f"base\r{FORGED}")]})
    finally:
        output = stop(process)
    # stderr is a pipe, so JSON lines: every line of the output is one the daemon wrote.
    lines = [line["event"] for line in json_lines(output)]
    assert not any(line.startswith(FORGED) for line in lines), output
    assert (answer["accepted"], answer["rejected"]) == (1, 2)
    assert any("registry notification: registry.local:5000/base:1" in line for line in lines)
    [dropped] = [line for line in lines if "dropped, not repository names" in line]
    assert "'base\\n2026-12-01" in dropped and "'base\\r2026-12-01" in dropped


def test_long_event_ids_are_not_kept_whole(bounded):
    # Issue 8: 1 MB ids were kept as they came, 10,000 of them; 400 here would take 400 MB.
    result = bounded("""
import json
from basewatch.watcher.notifications import RecentEvents, parse_notifications
recent = RecentEvents()
target = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "base",
          "tag": "1"}
for number in range(400):
    body = json.dumps({"events": [{"id": str(number) + "x" * 1_000_000, "action": "push",
                                   "target": target}]}).encode()
    [push], _, _ = parse_notifications("application/json", body)
    assert recent.first_time(push.id)
print("kept", len(recent), "ids of at most", max(map(len, recent._ids)), "characters")
""", timeout=150)
    assert result.returncode == 0, result.stderr[-2000:]
    kept, count, *_, longest, _ = result.stdout.split()
    assert (kept, count) == ("kept", "400") and int(longest) <= 128


def test_the_property_tests_hold_under_the_memory_limit(bounded):
    # Issue 8: any input gives a result or a clear error within a memory and time bound.
    result = bounded("import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
                     "'tests/unit/test_notification_properties.py']))", timeout=170)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
