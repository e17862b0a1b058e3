"""What the builder asks of a container engine; Docker Engine is one implementation."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

LogSink = Callable[[str], None]


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    dockerfile: str
    tags: list[str]
    platform: str
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    # Canonical references of the bases, so the engine can report which digests it built on.
    bases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    base_digests: dict[str, str]


class Engine(Protocol):
    """A container engine: blocking calls, which the builder runs in a thread."""

    def ping(self) -> None: ...

    def build(self, request: BuildRequest, log: LogSink) -> BuildResult: ...

    def push(self, tag: str, log: LogSink) -> str: ...

    def cancel(self) -> None: ...
