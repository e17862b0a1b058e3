"""The graph as a picture: columns from bases to the tasks built on tasks' images, failing
references marked, and every text escaped."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

from basewatch.graph_svg import ago, render_svg

NS = {"svg": "http://www.w3.org/2000/svg"}
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def ref(reference, dependents, published_by=(), error=None, changed=None, digest="sha256:" + "ab" * 32):
    return {"reference": reference, "platform": "linux/amd64", "digest": digest,
            "index_digest": None, "checked_at": NOW.isoformat(), "changed_at": changed,
            "last_error": error, "published_by": list(published_by),
            "dependents": [{"task": t, "kind": k, "digest_at_build": None}
                           for t, k in dependents]}


def view():
    return {"references": [
        ref("r/base:1", [("mid", "runtime"), ("app", "buildtime")],
            changed=(NOW - timedelta(minutes=3)).isoformat()),
        ref("r/mid:latest", [("app", "runtime")], published_by=["mid"]),
        ref("down/old:2", [("legacy", "runtime")], error="down/old:2: cannot reach registry "
            "down at https://down: connection refused (tried 4 times)", digest=None),
    ], "tasks": [{"name": n, "publishes": [], "upstream": [], "downstream": []}
                 for n in ("app", "legacy", "mid")]}


def nodes(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    found = {}
    for group in root.iterfind("svg:g", NS):
        key = group.get("data-task") or group.get("data-reference")
        found[key] = group
    return found


def column(group: ET.Element) -> int:
    return int(group.get("transform").removeprefix("translate(").split(",")[0])


def texts(group: ET.Element) -> list[str]:
    return [t.text for t in group.iterfind("svg:text", NS)]


def test_bases_then_tasks_then_their_images_then_the_tasks_on_those():
    found = nodes(render_svg(view(), {"mid": "Succeeded", "app": "Running"}, NOW))
    assert column(found["r/base:1"]) == column(found["down/old:2"]) \
        < column(found["mid"]) == column(found["legacy"]) \
        < column(found["r/mid:latest"]) < column(found["app"])
    assert "status-succeeded" in found["mid"].get("class")
    assert "status-running" in found["app"].get("class")
    assert "status-never-run" in found["legacy"].get("class")
    assert texts(found["r/base:1"]) == ["r/base:1", "linux/amd64  ·  abababababab",
                                        "changed 3 min ago"]
    assert "published" in found["r/mid:latest"].get("class")


def test_a_failing_reference_is_marked_with_its_reason():
    found = nodes(render_svg(view(), {}, NOW))
    failing = found["down/old:2"]
    assert "failing" in failing.get("class")
    assert texts(failing)[0] == "⚠ down/old:2" and texts(failing)[1].endswith("unknown")
    assert " ".join(texts(failing)[2:]) == ("check failing: cannot reach registry down at "
                                            "https://down: connection refused (tried 4 times)")
    assert "failing" not in found["r/base:1"].get("class")


def test_hostile_text_is_escaped_not_markup():
    hostile = '<script>alert(1)</script>"\'&'
    data = view()
    data["references"][2]["last_error"] = hostile
    data["references"][0]["reference"] = 'r/base:1"><script>alert(2)</script>'
    svg = render_svg(data, {"mid": hostile}, NOW)
    assert "<script>" not in svg
    root = ET.fromstring(svg)
    assert root.find(".//svg:script", NS) is None
    assert any(hostile in (t.text or "") for t in root.iter(f"{{{NS['svg']}}}title"))


def test_nothing_watched_says_so():
    assert "nothing is watched yet" in render_svg({"references": [], "tasks": []}, {}, NOW)


def test_ago():
    assert ago(None, NOW) == "never"
    assert ago((NOW - timedelta(seconds=5)).isoformat(), NOW) == "5 s ago"
    assert ago((NOW - timedelta(hours=3, minutes=1)).isoformat(), NOW) == "3 h ago"
    assert ago("not a time", NOW) == "not a time"
