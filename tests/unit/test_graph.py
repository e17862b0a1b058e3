"""The task graph, pure: which tasks publish a stable tag, who is built on whom, and cycles."""
from __future__ import annotations

import pytest

from basewatch.errors import GraphError
from basewatch.graph import TaskGraph, published_images
from basewatch.models import Dependency, DependencyKind
from basewatch.tasks import Task

REG = "reg.example:5000"


def task(name: str, *images: str) -> Task:
    return Task(name=name, context="/nowhere", images=list(images))


def edge(task_name: str, base: str) -> Dependency:
    return Dependency(task_name, base, "linux/amd64", DependencyKind.RUNTIME)


def test_only_stable_tags_are_published():
    published = published_images(task("app", f"{REG}/app:{{{{.Run.ID}}}}",
                                       f"{REG}/app:$Date", f"{REG}/app:latest",
                                       f"{REG}/app:{{{{.Run.Commit}}}}", f"{REG}/app:v-$Commit",
                                       "{{.Run.Registry}}/app:stable", "node"), REG)
    assert published == {f"{REG}/app:latest", f"{REG}/app:stable",
                         "docker.io/library/node:latest"}


def test_an_unrenderable_tag_publishes_nothing():
    assert published_images(task("app", "{{.Run.Nope}}/app:1"), REG) == set()


def chain() -> TaskGraph:
    # base -> mid -> app, and tool built on nothing of ours
    published = {"base": {f"{REG}/base:1"}, "mid": {f"{REG}/mid:1"}, "app": {f"{REG}/app:1"},
                 "tool": {f"{REG}/tool:1"}}
    return TaskGraph(published, [edge("mid", f"{REG}/base:1"), edge("app", f"{REG}/mid:1"),
                                 edge("tool", "docker.io/library/alpine:3")])


def test_ancestors_follow_the_chain():
    graph = chain()
    assert graph.ancestors("app") == {"mid", "base"}
    assert graph.ancestors("mid") == {"base"}
    assert graph.ancestors("base") == set() and graph.ancestors("tool") == set()
    assert graph.downstream["base"] == {"mid"}


def test_a_chain_has_no_cycle():
    chain().check_acyclic()


def test_a_cycle_is_named_with_the_images_that_close_it():
    published = {"a": {f"{REG}/a:1"}, "b": {f"{REG}/b:1"}}
    graph = TaskGraph(published, [edge("a", f"{REG}/b:1"), edge("b", f"{REG}/a:1")])
    assert graph.find_cycle() == ["a", "b", "a"]
    with pytest.raises(GraphError) as caught:
        graph.check_acyclic()
    assert str(caught.value) == (f"tasks would form a cycle: a -> b -> a (a's image {REG}/a:1 "
                                 f"is b's base, b's image {REG}/b:1 is a's base)")


def test_a_deep_chain_is_walked_without_recursion():
    depth = 5000
    published = {f"t{n}": {f"{REG}/t{n}:1"} for n in range(depth)}
    edges = [edge(f"t{n + 1}", f"{REG}/t{n}:1") for n in range(depth - 1)]
    graph = TaskGraph(published, edges)
    assert graph.find_cycle() is None
    assert len(graph.ancestors(f"t{depth - 1}")) == depth - 1
