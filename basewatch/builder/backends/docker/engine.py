"""What the builder asks of a container engine; Docker Engine is one implementation."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Protocol

LogSink = Callable[[str], None]


@dataclass(frozen=True)
class EngineTLS:
    """A tcp:// engine's TLS files: the CA that signed its certificate, and ours."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    dockerfile: str
    tags: list[str]
    platform: str
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    # A tar of the context, read instead of `context` (a task file's workspace, which lives
    # on the engine, not on this host).
    archive: IO[bytes] | None = None


@dataclass(frozen=True)
class BuildResult:
    image_id: str


@dataclass(frozen=True)
class ContainerSpec:
    """One container of a task file's cmd step, as the engine creates it."""

    name: str  # unique on the engine
    image: str
    command: tuple[str, ...] = ()  # () : the image's own
    entrypoint: str | None = None
    env: tuple[str, ...] = ()  # K=V
    working_dir: str | None = None  # None: the image's own
    user: str | None = None
    network: str | None = None  # an engine network's name; None: no network at all
    aliases: tuple[str, ...] = ()  # its DNS names on `network`
    ports: tuple[str, ...] = ()  # published, as `docker run -p` writes them
    expose: tuple[str, ...] = ()
    privileged: bool = False
    mounts: tuple[tuple[str, str], ...] = ()  # (volume name, path in the container)
    engine_access: bool = False  # the engine's socket (or address) handed to the container
    labels: dict[str, str] = field(default_factory=dict)


class Engine(Protocol):
    """A container engine: blocking calls, which the builder runs in a thread."""

    def ping(self) -> None: ...

    def pull(self, source: str, name: str, platform: str | None, auth: dict | None,
             log: LogSink, current: str | None = None) -> str: ...

    def build(self, request: BuildRequest, log: LogSink) -> BuildResult: ...

    def push(self, tag: str, auth: dict | None, log: LogSink) -> str: ...

    def cancel(self) -> None: ...

    # A task file's run: its networks, volumes and containers.

    def has_image(self, image: str) -> bool: ...

    def create_network(self, name: str, driver: str, ipv6: bool,
                       labels: dict[str, str]) -> None: ...

    def remove_network(self, name: str) -> None: ...

    def disconnect(self, network: str, container: str) -> None: ...

    def create_volume(self, name: str, labels: dict[str, str]) -> None: ...

    def remove_volume(self, name: str) -> None: ...

    def create_holder(self, name: str, mounts: tuple[tuple[str, str], ...],
                      labels: dict[str, str]) -> str:
        """A container that never runs, holding `mounts`: files go in and out of the volumes
        through it, by the engine's API, so a remote engine's volumes work too."""
        ...

    def put_files(self, container: str, path: str, archive: IO[bytes]) -> None: ...

    def get_files(self, container: str, path: str, into: IO[bytes]) -> None:
        """A tar of what `path` holds, its entries relative to it, written to `into`."""
        ...

    def run_container(self, spec: ContainerSpec, log: LogSink,
                      created: Callable[[str], None]) -> int:
        """Create, start, stream its output until it ends; its exit code. `created` is told
        its id first, so another thread can remove it to cut it short."""
        ...

    def start_container(self, spec: ContainerSpec) -> str: ...

    def container_output(self, container: str) -> str: ...

    def remove_container(self, container: str) -> None:
        """Killed if it runs, removed; gone already is fine."""
        ...

    def containers(self, labels: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
        """Every container, running or not, carrying `labels`: (id, its labels)."""
        ...
