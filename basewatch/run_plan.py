"""A run plan: the steps one run takes, and what each step reports when it is done.

Plain data, no engine in it: the planner writes a plan, a backend carries its steps out and
reports an outcome per step. A Dockerfile task is a plan of one build step per platform and its
pushes (and, for several platforms, one index per tag), taken in order. A multi-step task file
(acr-task.yaml) is a plan of `TaskStep`s: each one build, one push of several images, or one
container (`CmdStep`), with ACR's step properties (`StepControl`) saying when it starts, how
long it may take and what its failure means; the backend runs them as a graph, independent
steps at the same time, on a network and a shared workspace of the run's own (`Workspace`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class BuildStep:
    """Build the context's Dockerfile for one platform, on these bases, under these tags."""

    platform: str
    tags: list[str]
    bases: list[str]  # what the Dockerfile names for this platform: pulled before the build
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    # Bases to build on at a known digest, not at whatever their tag points to when pulled:
    # base -> platform digest (for a base-image run, the digest that fired it).
    pinned: dict[str, str] = field(default_factory=dict)
    # A task file's build: its context, relative to the run's workspace, and `--no-cache`.
    context: str = "."
    no_cache: bool = False


@dataclass(frozen=True)
class PushStep:
    """Push an image built by an earlier step of the plan."""

    tag: str
    platform: str | None = None  # set: one platform's image of a multi-platform tag


@dataclass(frozen=True)
class IndexStep:
    """Push one index under `tag` of the platform images pushed earlier in the plan."""

    tag: str
    images: list[tuple[str, str]]  # (platform, the tag its image was pushed under)


@dataclass(frozen=True)
class StepControl:
    """When a task-file step starts and what its failure means: ACR's step properties."""

    id: str  # `acb_step_N` when the file gives none; a cmd step's container's DNS name
    # None: after the step before it (none before: at once); ("-",): at once; ids: after those.
    when: tuple[str, ...] | None = None
    timeout: float = 600.0  # seconds, per attempt (the file's stepTimeout unless the step says)
    start_delay: float = 0.0
    retries: int = 0  # attempts after the first that failed
    retry_delay: float = 5.0
    repeat: int = 0  # times the step runs again after it succeeded
    ignore_errors: bool = False  # a failure neither fails the run nor skips what waits on it


@dataclass(frozen=True)
class VolumeMount:
    volume: str  # the name of one of the workspace's volumes
    path: str  # where it is mounted in the container


@dataclass(frozen=True)
class Container:
    """How a cmd step's container runs. `image` is already an image reference: aliases
    (`bash`, `curl`...) are mapped by the planner."""

    image: str
    args: tuple[str, ...] = ()
    entrypoint: str | None = None
    env: tuple[str, ...] = ()  # K=V: the file's env, then the step's
    working_directory: str | None = None  # None: the workspace's
    disable_working_directory_override: bool = False
    user: str | None = None
    network: str | None = None  # None: the workspace's default network
    ports: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    privileged: bool = False
    pull: bool = False  # pull before running even when the engine has the image
    detach: bool = False  # started, not waited for; stopped and removed when the run ends
    keep: bool = False  # a detached container outlives the run
    mounts: tuple[VolumeMount, ...] = ()
    engine_access: bool = False  # the `docker` alias: the backend's engine is given to it


@dataclass(frozen=True)
class CmdStep:
    container: Container


@dataclass(frozen=True)
class TaskStep:
    """One step of a task file: what it does (a build, the pushes of its images, or a
    container) and `control`. A push step of several images is one step of several pushes."""

    control: StepControl
    action: BuildStep | tuple[PushStep, ...] | CmdStep


@dataclass(frozen=True)
class Network:
    name: str
    driver: str = "bridge"
    ipv6: bool = False
    skip_creation: bool = False  # an existing network the run joins, neither made nor removed
    is_default: bool = False


@dataclass(frozen=True)
class Workspace:
    """What a task file's steps share: the folder holding the context, mounted in every
    container at `working_directory`; the networks (by default one the run makes, on which a
    cmd step's id is its container's host name); the named volumes, some of them secret
    files; and the values that must never reach a log line."""

    working_directory: str = "/workspace"
    networks: tuple[Network, ...] = (Network("acb_default_network", is_default=True),)
    volumes: dict[str, dict[str, bytes]] = field(default_factory=dict)  # name -> {file: bytes}
    secrets: tuple[str, ...] = ()  # masked as ***** in every line the run logs


Step = BuildStep | PushStep | IndexStep | TaskStep


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    task: str  # the task's name, for logs
    context: Path  # the checked-out build context, on this host
    images: list[str]  # the task's image names, rendered for this run
    steps: list[Step]
    workspace: Workspace | None = None  # a task file's plan; None: a Dockerfile task's

    @property
    def platforms(self) -> list[str]:
        return list(dict.fromkeys(s.platform for s in self.steps if isinstance(s, BuildStep)))


@dataclass(frozen=True)
class BuildOutcome:
    step: BuildStep
    base_digests: dict[str, str]  # base -> the platform digest built on


@dataclass(frozen=True)
class PushOutcome:
    step: PushStep
    digest: str


@dataclass(frozen=True)
class IndexOutcome:
    step: IndexStep
    digest: str


@dataclass(frozen=True)
class TaskStepOutcome:
    """How a task-file step ended: Succeeded, Failed (after its retries), Skipped (a step it
    waits on failed), or Detached (started, left running until the run ends)."""

    step: TaskStep
    status: str
    seconds: float
    attempts: int = 1
    exit_code: int | None = None  # a cmd step's container's
    error: str | None = None
    outcomes: tuple[BuildOutcome | PushOutcome, ...] = ()  # a build's or the pushes'


StepOutcome = BuildOutcome | PushOutcome | IndexOutcome | TaskStepOutcome
