"""Plain data types shared by the watcher, the builder and the store. No behaviour lives here."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum


class RunStatus(str, Enum):
    QUEUED = "Queued"
    STARTED = "Started"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"
    ERROR = "Error"
    TIMEOUT = "Timeout"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.STARTED, RunStatus.RUNNING)


class Trigger(str, Enum):
    MANUAL = "Manual"
    COMMIT = "Commit"
    PULL_REQUEST = "Pull Request"
    TIMER = "Timer"
    IMAGE_UPDATE = "Image Update"


class RunType(str, Enum):
    QUICK_BUILD = "QuickBuild"
    QUICK_RUN = "QuickRun"
    AUTO_BUILD = "AutoBuild"
    AUTO_RUN = "AutoRun"


# Run ids are this prefix and a number that is never reused: ca1, ca2... (as ACR Tasks writes them).
RUN_ID_PREFIX = "ca"


class DependencyKind(str, Enum):
    RUNTIME = "runtime"
    BUILDTIME = "buildtime"


@dataclass(frozen=True)
class Dependency:
    """An edge of the graph: `task` is built on `base` (a canonical reference) for `platform`."""

    task: str
    base: str
    platform: str
    kind: DependencyKind
    digest_at_build: str | None = None


@dataclass(frozen=True)
class WatchedDigest:
    """What the watcher last saw of one base reference for one platform."""

    base: str
    platform: str
    digest: str | None
    index_digest: str | None = None
    checked_at: datetime | None = None
    changed_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class DigestChange:
    """The watcher saw `base` move from `old` to `new` for `platform`."""

    base: str
    platform: str
    old: str
    new: str
    index_digest: str | None


@dataclass(frozen=True)
class PushedImage:
    image: str
    digest: str


@dataclass(frozen=True)
class BaseChange:
    """What fired a base-image run: `reference` was seen at `digest` for `platform`."""

    reference: str
    platform: str
    digest: str


@dataclass(frozen=True)
class TimerMark:
    """Where one timer of a task stands: the last scheduled fire handled, on which schedule."""

    task: str
    timer: str
    schedule: str
    last_scheduled: datetime


@dataclass(frozen=True)
class TaskWebhook:
    """A task's webhook secret kept by the daemon: generated for a hook it registered on the
    repository (hook_id, on the context it was registered for), or for one added by hand."""

    task: str
    secret: str = field(repr=False)  # deliveries are checked against it: shown to no log
    provider: str | None = None  # github, gitlab, gitea: the API family it was registered on
    context: str | None = None  # the context URL the hook was registered for
    hook_id: int | None = None  # None: nothing registered, the secret is for a hook by hand


@dataclass(frozen=True)
class SourceCommit:
    """What fired a commit or pull-request run: the commit to build (its full SHA), the branch
    pushed (a pull request's head branch), and for a pull request its number, the branch it
    would merge into and the ref its head is fetched by (refs/pull/2/head)."""

    commit: str
    branch: str | None = None
    pull_request: int | None = None
    target_branch: str | None = None
    fetch_ref: str | None = None

    @property
    def key(self) -> str:
        """What makes two events one run of a task: the same commit pushed (by a webhook or
        seen by a poll, to any branch), or the same pull request at the same head."""
        if self.pull_request is not None:
            return f"pull-request:{self.pull_request}:{self.commit}"
        return f"commit:{self.commit}"


@dataclass(frozen=True)
class StepRecord:
    """How one step of a task file's run went, as the run's record keeps it (one line each)."""

    id: str
    kind: str  # build, push or cmd
    action: str  # what it does: its image, its build's tags, its pushes
    status: str  # Succeeded, Failed, Skipped or Detached
    started_after: float | None  # seconds from the run's start to the step's
    seconds: float
    attempts: int
    exit_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunRequest:
    """A run to queue: which task, why, and for which platform(s), a comma list."""

    task: str
    trigger: Trigger
    run_type: RunType
    platform: str
    reason: str = ""
    not_before: datetime | None = None
    retry_of: str | None = None
    spec: str | None = None
    values: dict[str, object] | None = None  # scalars as text; a values file may nest
    base_change: BaseChange | None = None  # what fired a base-image run
    source_commit: SourceCommit | None = None  # what fired a commit or pull-request run
    # The names of the run's `--set-secret`s: their values are held in the daemon's memory
    # only, and a run that finds them gone (the daemon restarted) fails saying so.
    secret_names: tuple[str, ...] = ()
    registry: str | None = None  # the run's own registry ({{.Run.Registry}}); None: config's
    # The daemon it must run on, of several on one database: the one holding its uploaded
    # context or its secrets in memory. None: whichever claims it first.
    daemon: str | None = None


@dataclass
class Run:
    id: str
    task: str
    trigger: Trigger
    run_type: RunType
    status: RunStatus
    platform: str
    queued_at: datetime
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    base_digests: dict[str, str] = field(default_factory=dict)
    outputs: list[PushedImage] = field(default_factory=list)
    error: str | None = None
    not_before: datetime | None = None  # the end of its settle window
    retry_of: str | None = None  # the interrupted run this one re-runs
    spec: str | None = None  # a quick run's own task definition (JSON); task runs read the task
    # A values file's values with `--set`'s over them; scalars as text, a file's may nest.
    values: dict[str, object] = field(default_factory=dict)
    git_revision: str | None = None
    archived: bool = False
    archive_ref: str | None = None  # where the archived log was pushed
    base_change: BaseChange | None = None  # for a base-image run: the change that fired it
    source_commit: SourceCommit | None = None  # for a commit or pull-request run: its commit
    secret_names: tuple[str, ...] = ()  # its `--set-secret`s, by name: never their values
    registry: str | None = None  # its own registry (`--registry`); None: the config's
    engine: str | None = None  # the pool's build engine it went to; None: the local engine
    daemon: str | None = None  # the daemon that claimed it (several on one database)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return (end - self.started_at).total_seconds()
