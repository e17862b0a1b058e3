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


@dataclass(frozen=True)
class BuildResult:
    image_id: str


class Engine(Protocol):
    """A container engine: blocking calls, which the builder runs in a thread."""

    def ping(self) -> None: ...

    def pull(self, source: str, name: str, platform: str, auth: dict | None,
             log: LogSink, current: str | None = None) -> str: ...

    def build(self, request: BuildRequest, log: LogSink) -> BuildResult: ...

    def push(self, tag: str, auth: dict | None, log: LogSink) -> str: ...

    def cancel(self) -> None: ...
