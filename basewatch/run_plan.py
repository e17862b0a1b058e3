"""A run plan: the steps one run takes, and what each step reports when it is done.

Plain data, no engine in it: the planner writes a plan, a backend carries its steps out and
reports an outcome per step. A Dockerfile task is a plan of one build step per platform and its
pushes (and, for several platforms, one index per tag); a multi-step task file fills the same
shape with more steps.
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


Step = BuildStep | PushStep | IndexStep


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    task: str  # the task's name, for logs
    context: Path  # the checked-out build context, on this host
    images: list[str]  # the task's image names, rendered for this run
    steps: list[Step]

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


StepOutcome = BuildOutcome | PushOutcome | IndexOutcome
