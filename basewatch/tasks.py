"""The domain's task: what to build, for which platforms, and when. Plain data, no framework.

The config file's model and the API's body are validated at the edge and mapped into a Task
there (config.TaskSettings.to_task); the store persists it; the graph, the watcher and the
builder read it. Platforms arrive parsed.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Literal

from basewatch.context_spec import parse_context
from basewatch.models import RunType
from basewatch.oci.platforms import DEFAULT_PLATFORM, Platform

TriggerType = Literal["runtime", "all"]


def is_task_file(file: str) -> bool:
    """Whether a task's `file` is a task file (acr-task.yaml) rather than a Dockerfile: by its
    extension, as ACR decides (`acr-task.yaml`, `ci.yml`)."""
    return posixpath.splitext(file.lower())[1] in (".yaml", ".yml")


@dataclass(frozen=True)
class BaseImageTrigger:
    """Whether a change of a base rebuilds the task: its runtime base only, or every base."""

    enabled: bool = True
    type: TriggerType = "runtime"


@dataclass(frozen=True)
class CommitTrigger:
    """A commit to one of `branches` rebuilds the task (a git context only). No branches: the
    context's own branch (its `#ref`, or the remote's default branch)."""

    enabled: bool = True
    branches: tuple[str, ...] = ()


@dataclass(frozen=True)
class PullRequestTrigger:
    """A pull request opened or updated against one of the commit trigger's branches builds
    its head (pushes included, as ACR does); pull requests from forks only when allowed."""

    enabled: bool = False
    allow_forks: bool = False


@dataclass(frozen=True)
class Timer:
    """A cron schedule (five fields, UTC, Sunday as 0) that runs the task."""

    name: str
    schedule: str
    enabled: bool = True


@dataclass(frozen=True)
class Task:
    name: str
    context: str  # a folder on the daemon's host, or a git or tarball URL
    images: list[str]
    file: str = "Dockerfile"
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    # One or more; several are built into one index per tag, and each is watched on its own.
    platforms: list[Platform] = field(default_factory=lambda: [DEFAULT_PLATFORM])
    base_image_trigger: BaseImageTrigger = BaseImageTrigger()
    push: bool = True
    timeout: float = 3600.0
    commit_trigger: CommitTrigger = CommitTrigger()
    pull_request_trigger: PullRequestTrigger = PullRequestTrigger()
    timers: tuple[Timer, ...] = ()
    # Names of environment variables, never the values: the secret a repository's webhooks
    # are signed with, and a token for private repositories and the provider's REST API.
    webhook_secret_env: str | None = None
    git_access_token_env: str | None = None
    report_status: bool = False  # post each run's state to its commit (needs the token)

    @property
    def local_context(self) -> bool:
        return parse_context(self.context).kind == "local"

    @property
    def runs_task_file(self) -> bool:
        return is_task_file(self.file)

    @property
    def run_type(self) -> RunType:
        """What its runs are, as ACR names them: a task file's are runs, a Dockerfile's builds."""
        return RunType.AUTO_RUN if self.runs_task_file else RunType.AUTO_BUILD

    @property
    def platform_list(self) -> str:
        """The platforms as a run records them: `linux/amd64,linux/arm64`."""
        return ",".join(str(p) for p in self.platforms)
