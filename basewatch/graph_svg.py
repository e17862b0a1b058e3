"""The dependency graph as a picture (SVG) for the dashboard: base images on the left, the
tasks built on them, the images those tasks publish, and the tasks built on those, left to
right. Pure: built from `graph_view`'s dict. Every text goes through ElementTree, which escapes
it, so a hostile task name or registry error is shown as text.

Styling is by class (the dashboard's stylesheet), not inline, so the page's Content-Security-
Policy can forbid inline styles; the few presentation attributes keep the file readable alone.
"""
from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime, timezone

NODE_WIDTH = 260
NODE_HEIGHT = 62
# A reference whose check fails says why on up to three lines.
FAILING_HEIGHT = 94
COLUMN_GAP = 90
ROW_GAP = 26
MARGIN = 16
# Characters of an error on one line of a node.
ERROR_CHARS = 44
# Characters of a reference or name that fit on a node's line; the whole text is its tooltip.
LINE_CHARS = 34
SVG_NS = "http://www.w3.org/2000/svg"


def _short(digest: str | None) -> str:
    return digest.split(":")[-1][:12] if digest else "unknown"


def _fit(text: str, chars: int = LINE_CHARS) -> str:
    """Cut in the middle, where a reference is least telling (the registry and the tag stay)."""
    if len(text) <= chars:
        return text
    keep = chars - 1
    return text[:keep // 2] + "…" + text[len(text) - (keep - keep // 2):]


def ago(moment: str | None, now: datetime) -> str:
    """'3 min ago' from an ISO time; 'never' when there is none."""
    if not moment:
        return "never"
    try:
        then = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


class _Node:
    def __init__(self, key: str, kind: str):
        self.key = key
        self.kind = kind  # "base" (watched reference) or "task"
        self.column = 0
        self.row = 0.0
        self.inputs: list[_Node] = []

    @property
    def x(self) -> int:
        return MARGIN + self.column * (NODE_WIDTH + COLUMN_GAP)

    @property
    def y(self) -> int:
        return MARGIN + int(self.row) * (NODE_HEIGHT + ROW_GAP)


def _layout(view: dict) -> tuple[dict[str, _Node], list[tuple[_Node, _Node, str]]]:
    """Nodes keyed `ref:<reference>|<platform>` and `task:<name>`, each in its column; edges
    (from, to, kind)."""
    nodes: dict[str, _Node] = {}
    edges: list[tuple[_Node, _Node, str]] = []

    def task_node(name: str) -> _Node:
        return nodes.setdefault(f"task:{name}", _Node(f"task:{name}", "task"))

    for task in view.get("tasks", []):
        task_node(task["name"])
    for ref in view.get("references", []):
        base = nodes.setdefault(f"ref:{ref['reference']}|{ref['platform']}",
                                _Node(f"ref:{ref['reference']}|{ref['platform']}", "base"))
        for producer in ref.get("published_by", []):
            edges.append((task_node(producer), base, "publishes"))
        for dependent in ref.get("dependents", []):
            edges.append((base, task_node(dependent["task"]),
                          "runtime" if dependent.get("kind") == "runtime" else "build"))
    for source, target, _ in edges:
        target.inputs.append(source)
    # Longest path from the left: the graph is acyclic (registration refuses cycles), so this
    # settles within as many rounds as there are nodes; the bound guards a store gone wrong.
    for _ in range(len(nodes)):
        moved = False
        for node in nodes.values():
            column = max((source.column + 1 for source in node.inputs),
                         default=1 if node.kind == "task" else 0)
            if column != node.column:
                node.column, moved = column, True
        if not moved:
            break
    columns: dict[int, list[_Node]] = {}
    for node in sorted(nodes.values(), key=lambda n: n.key):
        columns.setdefault(node.column, []).append(node)
    for column in sorted(columns):
        members = columns[column]
        # Beside what feeds it: fewer crossing edges than in name order.
        members.sort(key=lambda n: (sum(s.row for s in n.inputs) / len(n.inputs)
                                    if n.inputs else 0.0, n.key))
        for row, node in enumerate(members):
            node.row = row
    return nodes, edges


def render_svg(view: dict, statuses: Mapping[str, str] | None = None,
               now: datetime | None = None) -> str:
    """The graph as an SVG document. `statuses`: each task's last run status, for its colour."""
    statuses = statuses or {}
    now = now or datetime.now(timezone.utc)
    nodes, edges = _layout(view)
    refs = {f"ref:{r['reference']}|{r['platform']}": r for r in view.get("references", [])}
    columns = max((n.column for n in nodes.values()), default=0) + 1
    rows = max((n.row for n in nodes.values()), default=0) + 1
    width = 2 * MARGIN + columns * NODE_WIDTH + (columns - 1) * COLUMN_GAP
    # Room below the last row for a taller (failing) node.
    height = 2 * MARGIN + int(rows) * NODE_HEIGHT + (int(rows) - 1) * ROW_GAP + \
        FAILING_HEIGHT - NODE_HEIGHT
    svg = ET.Element("svg", {"xmlns": SVG_NS, "class": "graph", "width": str(width),
                             "height": str(height), "viewBox": f"0 0 {width} {height}",
                             "role": "img", "font-family": "sans-serif", "font-size": "12"})
    ET.SubElement(svg, "title").text = "basewatch: base images, the tasks built on them, " \
                                       "and the tasks built on those"
    defs = ET.SubElement(svg, "defs")
    marker = ET.SubElement(defs, "marker", {"id": "arrow", "viewBox": "0 0 10 10", "refX": "10",
                                            "refY": "5", "markerWidth": "7",
                                            "markerHeight": "7", "orient": "auto-start-reverse"})
    ET.SubElement(marker, "path", {"d": "M 0 0 L 10 5 L 0 10 z", "class": "arrowhead",
                                   "fill": "#778"})
    if not nodes:
        ET.SubElement(svg, "text", {"x": str(MARGIN), "y": str(MARGIN + 14),
                                    "class": "empty"}).text = "nothing is watched yet"
    for source, target, kind in edges:
        x1, y1 = source.x + NODE_WIDTH, source.y + NODE_HEIGHT // 2
        x2, y2 = target.x, target.y + NODE_HEIGHT // 2
        bend = max(30, (x2 - x1) // 2)
        ET.SubElement(svg, "path", {
            "d": f"M {x1} {y1} C {x1 + bend} {y1}, {x2 - bend} {y2}, {x2} {y2}",
            "class": f"edge edge-{kind}", "fill": "none", "stroke": "#778",
            "stroke-width": "1.5", "marker-end": "url(#arrow)",
            **({"stroke-dasharray": "5 4"} if kind == "build" else {})})
    for node in sorted(nodes.values(), key=lambda n: n.key):
        if node.kind == "base":
            _base_node(svg, node, refs[node.key], now)
        else:
            name = node.key.removeprefix("task:")
            _task_node(svg, node, name, statuses.get(name))
    return ET.tostring(svg, encoding="unicode")


def _box(svg: ET.Element, node: _Node, classes: str, tooltip: str,
         height: int = NODE_HEIGHT) -> ET.Element:
    group = ET.SubElement(svg, "g", {"class": classes,
                                     "transform": f"translate({node.x},{node.y})"})
    ET.SubElement(group, "title").text = tooltip
    ET.SubElement(group, "rect", {"width": str(NODE_WIDTH), "height": str(height),
                                  "rx": "6", "class": "box", "fill": "#fff",
                                  "stroke": "#889"})
    return group


def _line(group: ET.Element, y: int, text: str, css: str, x: int = 12) -> None:
    ET.SubElement(group, "text", {"x": str(x), "y": str(y), "class": css}).text = text


def _base_node(svg: ET.Element, node: _Node, ref: dict, now: datetime) -> None:
    failing = bool(ref.get("last_error"))
    published = bool(ref.get("published_by"))
    classes = "node base" + (" failing" if failing else "") + (" published" if published else "")
    tooltip = (f"{ref['reference']} [{ref['platform']}]\ndigest {ref.get('digest') or 'unknown'}"
               f"\nchecked {ref.get('checked_at') or 'never'}, changed "
               f"{ref.get('changed_at') or 'never'}"
               + (f"\ncheck failing: {ref['last_error']}" if failing else ""))
    group = _box(svg, node, classes, tooltip, FAILING_HEIGHT if failing else NODE_HEIGHT)
    group.set("data-reference", ref["reference"])
    _line(group, 19, ("⚠ " if failing else "") + _fit(ref["reference"]), "title")
    _line(group, 36, f"{ref['platform']}  ·  {_short(ref.get('digest'))}", "detail mono")
    if failing:
        reason = textwrap.wrap("check failing: " + _reason(ref["reference"], ref["last_error"]),
                               ERROR_CHARS)
        if len(reason) > 3:
            reason = [*reason[:2], _cut(" ".join(reason[2:]), ERROR_CHARS)]
        for number, line in enumerate(reason):
            _line(group, 52 + 14 * number, line, "detail error")
    elif ref.get("changed_at"):
        _line(group, 52, f"changed {ago(ref['changed_at'], now)}", "detail")
    else:
        _line(group, 52, f"no change seen · checked {ago(ref.get('checked_at'), now)}", "detail")


def _reason(reference: str, error: object) -> str:
    """A check's error without the reference it starts with (the node's title says it)."""
    text = " ".join(str(error).split())
    return text.removeprefix(f"{reference}: ")


def _cut(text: str, chars: int) -> str:
    """The start of a sentence, which says the most; the rest is in the tooltip."""
    return text if len(text) <= chars else text[:chars - 1].rstrip() + "…"


def _task_node(svg: ET.Element, node: _Node, name: str, status: str | None) -> None:
    state = (status or "never run").lower().replace(" ", "-")
    group = _box(svg, node, f"node task status-{state}", f"task {name}\nlast run: "
                 f"{status or 'none yet'}")
    group.set("data-task", name)
    ET.SubElement(group, "rect", {"width": "6", "height": str(NODE_HEIGHT), "rx": "3",
                                  "class": "status-bar", "fill": "#889"})
    _line(group, 24, _fit(name, 30), "title", x=16)
    _line(group, 44, f"last run: {status or 'none yet'}", "detail", x=16)
