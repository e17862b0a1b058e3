"""The task graph: which task's published image is another task's base. Pure, no I/O.

A task publishes the tags in its `images` that name the same image on every run: a tag
with `{{.Run.ID}}`, `{{.Run.Date}}` or `{{.Run.Commit}}` in it is new each run, so no other task can be built on it.
A task file task's stable pushes are read from its file at registration (watcher/registration.py)
and given to the graph beside these.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

from basewatch.errors import BasewatchError, GraphError
from basewatch.models import Dependency
from basewatch.oci.reference import ImageReference
from basewatch.tasks import Task
from basewatch.templating import RunVariables, render

# Stand-ins for the per-run variables; a tag that contains one changes every run. The date's
# mark is taken from the template itself: strftime writes the year 1 as "1", not "0001", so a
# mark written out by hand never matched and `{{.Run.Date}}` tags passed as stable.
_PER_RUN = RunVariables(id="\x00id\x00", date=datetime(1, 1, 1, tzinfo=timezone.utc),
                        commit="\x00commit\x00")
_PER_RUN_MARKS = (_PER_RUN.id, _PER_RUN.commit, render("{{.Run.Date}}", _PER_RUN))


def published_images(task: Task, run_registry: str | None) -> set[str]:
    """Canonical references of the images a task's runs publish under a stable tag."""
    published = set()
    variables = RunVariables(id=_PER_RUN.id, date=_PER_RUN.date, registry=run_registry,
                             commit=_PER_RUN.commit)
    for template in task.images:
        try:
            tag = render(template, variables)
            if any(mark in tag for mark in _PER_RUN_MARKS):
                continue
            published.add(str(ImageReference.parse(tag)))
        except BasewatchError:
            continue  # an unrenderable tag fails the run with its own message
    return published


class TaskGraph:
    """Edges producer -> consumer between tasks, from published images and dependencies."""

    def __init__(self, published: Mapping[str, set[str]], dependencies: Iterable[Dependency]):
        producers: dict[str, set[str]] = {}
        for task, images in published.items():
            for image in images:
                producers.setdefault(image, set()).add(task)
        self.downstream: dict[str, set[str]] = {task: set() for task in published}
        self.upstream: dict[str, set[str]] = {task: set() for task in published}
        self.via: dict[tuple[str, str], str] = {}  # (producer, consumer) -> the image
        for dependency in dependencies:
            for producer in producers.get(dependency.base, ()):
                self.downstream.setdefault(producer, set()).add(dependency.task)
                self.upstream.setdefault(dependency.task, set()).add(producer)
                self.via[(producer, dependency.task)] = dependency.base

    def ancestors(self, task: str) -> set[str]:
        """Every task whose image `task` is built on, directly or through others."""
        seen: set[str] = set()
        stack = list(self.upstream.get(task, ()))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.upstream.get(current, ()))
        return seen

    def find_cycle(self) -> list[str] | None:
        """A cycle as [a, b, ..., a], or None. Iterative DFS: graphs can be thousands deep."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for root in sorted(self.downstream):
            if root in state:
                continue
            path, iterators = [root], [iter(sorted(self.downstream.get(root, ())))]
            state[root] = 1
            while path:
                child = next(iterators[-1], None)
                if child is None:
                    state[path.pop()] = 2
                    iterators.pop()
                elif state.get(child) == 1:
                    return path[path.index(child):] + [child]
                elif child not in state:
                    state[child] = 1
                    path.append(child)
                    iterators.append(iter(sorted(self.downstream.get(child, ()))))
        return None

    def check_acyclic(self) -> None:
        cycle = self.find_cycle()
        if cycle is not None:
            raise self.cycle_error(cycle)

    def cycle_error(self, cycle: list[str]) -> GraphError:
        """What is wrong with `cycle` (as find_cycle gives it), for the person who closed it."""
        links = ", ".join(f"{a}'s image {self.via[(a, b)]} is {b}'s base"
                          for a, b in zip(cycle, cycle[1:]))
        return GraphError(f"tasks would form a cycle: {' -> '.join(cycle)} ({links})")
