"""What `basewatch graph` and `GET /api/graph` show: every watched base, its digests, and the
tasks built on it, with the cascades between tasks. Pure: built from store rows, rendered as
JSON, text or Graphviz dot."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from basewatch.graph import TaskGraph
from basewatch.models import Dependency, WatchedDigest


def build_graph_view(watched: Iterable[WatchedDigest], dependencies: Iterable[Dependency],
                     published: Mapping[str, set[str]]) -> dict:
    dependencies = list(dependencies)
    graph = TaskGraph(published, dependencies)
    producers: dict[str, list[str]] = {}
    for task, images in published.items():
        for image in images:
            producers.setdefault(image, []).append(task)
    references = []
    for w in watched:
        dependents = [{"task": d.task, "kind": d.kind.value, "digest_at_build": d.digest_at_build}
                      for d in dependencies if d.base == w.base and d.platform == w.platform]
        references.append({
            "reference": w.base, "platform": w.platform, "digest": w.digest,
            "index_digest": w.index_digest,
            "checked_at": w.checked_at.isoformat() if w.checked_at else None,
            "changed_at": w.changed_at.isoformat() if w.changed_at else None,
            "last_error": w.last_error,
            "published_by": sorted(producers.get(w.base, [])),
            "dependents": dependents,
        })
    tasks = [{"name": name, "publishes": sorted(published[name]),
              "upstream": sorted(graph.upstream.get(name, ())),
              "downstream": sorted(graph.downstream.get(name, ()))}
             for name in sorted(published)]
    return {"references": references, "tasks": tasks}


def _short(digest: str | None) -> str:
    return digest.split(":")[-1][:12] if digest else "unknown"


def render_text(view: dict) -> str:
    lines = []
    for ref in view["references"]:
        status = f"error: {ref['last_error']}" if ref["last_error"] else \
            f"checked {ref['checked_at'] or 'never'}, changed {ref['changed_at'] or 'never'}"
        producer = f" (published by {', '.join(ref['published_by'])})" \
            if ref["published_by"] else ""
        lines.append(f"{ref['reference']} [{ref['platform']}] {_short(ref['digest'])}"
                     f"{producer}: {status}")
        for dependent in ref["dependents"]:
            lines.append(f"  <- {dependent['task']} ({dependent['kind']})")
    cascades = [(t["name"], t["downstream"]) for t in view["tasks"] if t["downstream"]]
    if cascades:
        lines.append("cascades:")
        lines += [f"  {name} -> {', '.join(downstream)}" for name, downstream in cascades]
    return "\n".join(lines) if lines else "nothing is watched yet"


def render_dot(view: dict) -> str:
    lines = ["digraph basewatch {", "  rankdir=LR;"]
    for ref in view["references"]:
        lines.append(f'  "{ref["reference"]}" [shape=box, label="{ref["reference"]}\\n'
                     f'{ref["platform"]} {_short(ref["digest"])}"];')
        for dependent in ref["dependents"]:
            style = "solid" if dependent["kind"] == "runtime" else "dashed"
            lines.append(f'  "{ref["reference"]}" -> "task:{dependent["task"]}" '
                         f'[style={style}];')
    for task in view["tasks"]:
        lines.append(f'  "task:{task["name"]}" [shape=ellipse, label="{task["name"]}"];')
        for image in task["publishes"]:
            lines.append(f'  "task:{task["name"]}" -> "{image}" [style=bold];')
    lines.append("}")
    return "\n".join(lines)
