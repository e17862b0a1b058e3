"""The steps' graph as `when` draws it, checked: a step without `when` follows the one before
it, `["-"]` starts at once, ids wait for those steps. Unlike acr-builder, a step may wait for
one written after it; a cycle is then an error."""
from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

IMMEDIATE = "-"


@dataclass(frozen=True)
class Node:
    id: str
    when: tuple[str, ...] | None
    line: int  # where its `when` (or the step) is written
    name: str  # how errors name the step


class WhenError(Exception):
    def __init__(self, message: str, node: Node):
        super().__init__(message)
        self.message, self.node = message, node


def check(nodes: Sequence[Node]) -> None:
    """Raise WhenError for `-` beside ids, an unknown id, or a cycle."""
    ids = {node.id for node in nodes}
    for node in nodes:
        if node.when is None:
            continue
        if IMMEDIATE in node.when and len(node.when) > 1:
            raise WhenError('`when: ["-"]` starts a step at once and cannot be given beside '
                            "step ids", node)
        for wanted in node.when:
            if wanted != IMMEDIATE and wanted not in ids:
                close = difflib.get_close_matches(wanted, sorted(ids - {node.id}), n=1)
                hint = f" (did you mean `{close[0]}`?)" if close else ""
                raise WhenError(f"`when` names `{wanted}`, which is no step's id{hint}", node)
    _check_cycles(nodes)


def _check_cycles(nodes: Sequence[Node]) -> None:
    by_id = {node.id: node for node in nodes}
    waits: dict[str, list[str]] = {}
    for index, node in enumerate(nodes):
        if node.when is None:
            waits[node.id] = [nodes[index - 1].id] if index else []
        else:
            waits[node.id] = [w for w in node.when if w != IMMEDIATE]
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in by_id:
        if state.get(start):
            continue
        path, stack = [start], [iter(waits[start])]
        state[start] = 1
        while stack:
            following = next(stack[-1], None)
            if following is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(following) == 1:
                cycle = path[path.index(following):] + [following]
                # Name the step whose `when` closes it: the last one written.
                closer = max((by_id[i] for i in cycle[:-1] if by_id[i].when is not None),
                             key=nodes.index, default=by_id[following])
                loop = cycle[:-1]
                start = loop.index(closer.id)
                loop = loop[start:] + loop[:start]
                shown = " → ".join(f"`{i}`" for i in loop + [loop[0]])
                raise WhenError(f"`when` closes a cycle: {shown} (each waits for the next)",
                                closer)
            if not state.get(following):
                state[following] = 1
                path.append(following)
                stack.append(iter(waits[following]))
