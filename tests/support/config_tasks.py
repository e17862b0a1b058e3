"""A config file with many tasks, as an organisation's would be: N Dockerfiles over a few
hundred bases (multi-stage ones, ARGs, several platforms now and then), each task in a context
folder of its own. For the start-up bench and its end-to-end test."""
from __future__ import annotations

from pathlib import Path


def base_reference(registry: str, n: int) -> str:
    """The nth base, as bench/poll.py pushes them."""
    return f"{registry}/bench/base-{n:05d}:1"


def dockerfile(registry: str, n: int, bases: int) -> str:
    """Task n's Dockerfile: one of three shapes, its bases spread over `bases`."""
    runtime = base_reference(registry, n % bases)
    if n % 3 == 0:
        return f"FROM {runtime}\nRUN echo task {n} > /task\n"
    if n % 3 == 1:
        builder = base_reference(registry, (n * 7 + 1) % bases)
        return (f"ARG VERSION=1\nFROM {builder} AS build\nRUN echo build $VERSION > /out\n"
                f"FROM {runtime}\nCOPY --from=build /out /out\n")
    _, _, path = runtime.partition("/")
    name, _, _ = path.partition(":")
    return (f"ARG REGISTRY={registry}\nARG TAG=1\nFROM ${{REGISTRY}}/{name}:${{TAG}}\n"
            f"LABEL task={n}\n")


def write_tasks(folder: Path, registry: str, tasks: int, bases: int,
                broken: frozenset[int] = frozenset()) -> list[str]:
    """Write each task's context under `folder`; the config's `tasks:` lines. A task whose
    number is in `broken` has a Dockerfile with no FROM: it cannot be registered."""
    lines = ["tasks:"]
    for n in range(tasks):
        context = folder / f"task-{n:05d}"
        context.mkdir(parents=True, exist_ok=True)
        text = "RUN true\n" if n in broken else dockerfile(registry, n, bases)
        (context / "Dockerfile").write_text(text)
        platforms = ", platform: [linux/amd64, linux/arm64]" if n % 50 == 0 else ""
        lines.append(f"  - {{name: app-{n:05d}, context: {context}, "
                     f"image: ['{registry}/app-{n:05d}:latest']{platforms}}}")
    return lines
