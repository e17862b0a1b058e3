"""What the daemon asks of its store, one Protocol per view: tasks, the graph with the watched
digests, runs, the heads of polled git remotes. Callers type against these; the SQLite
implementation (SQLiteStore, the rest of this package) satisfies them, and a second
implementation (PostgreSQL for several daemons) would stand beside it. Only domain types cross: no rows, no SQL.

Errors: a store that refuses for now (locked, full) raises errors.StoreBusyError; the run
store retries what a run records as it goes while it does.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from basewatch.models import (
    Dependency,
    DependencyKind,
    PushedImage,
    Run,
    RunRequest,
    RunStatus,
    StepRecord,
    TaskWebhook,
    TimerMark,
    WatchedDigest,
)
from basewatch.tasks import Task


# A task's edges (base, platform, kind) and the images it publishes that its definition does
# not name, as registration stores them.
TaskEdges = tuple[str, Sequence[tuple[str, str, DependencyKind]], Iterable[str]]


class TaskStore(Protocol):
    """Task definitions and where each came from (`config` or `api`)."""

    async def upsert(self, task: Task, source: str) -> None: ...

    async def upsert_many(self, tasks: Sequence[tuple[Task, str]]) -> None:
        """Store several (task, source) in one transaction: all of them, or none."""

    async def get(self, name: str) -> Task | None: ...

    async def get_with_source(self, name: str) -> tuple[Task, str] | None: ...

    async def with_sources(self) -> list[tuple[Task, str]]: ...

    async def all(self, source: str | None = None) -> list[Task]: ...

    async def named(self, names: Iterable[str]) -> list[Task]:
        """The stored tasks among `names`, by name, read in one query (a few for thousands):
        a base's dependents without reading every task. Names with no task are left out."""

    async def names(self, source: str | None = None) -> set[str]:
        """The stored tasks' names, none of them read: cheap over thousands of tasks."""

    async def delete(self, name: str) -> bool:
        """Delete a task and its edges; False when there was none."""


class GraphStore(Protocol):
    """The edges (task, base, platform) and what the watcher last saw of each base."""

    async def replace_dependencies(self, task: str,
                                   edges: Iterable[tuple[str, str, DependencyKind]],
                                   digests: dict[tuple[str, str], str | None],
                                   published: Iterable[str] = ()) -> None:
        """Set a task's edges and, in the same transaction, the images it publishes that
        its definition does not name (a task file's pushes)."""

    async def replace_many(self, tasks: Sequence[TaskEdges],
                           digests: dict[tuple[str, str], str | None]) -> None:
        """`replace_dependencies` for several tasks in one transaction: all, or none."""

    async def published(self) -> dict[str, set[str]]:
        """By task, the images `replace_dependencies` was given (tasks with none left out)."""

    async def prune(self) -> None:
        """Forget watched digests no edge needs any more."""

    async def watched(self) -> list[WatchedDigest]: ...

    async def get_watched(self, base: str, platform: str) -> WatchedDigest | None: ...

    async def record_same(self, checks: Iterable[tuple[str, str, str, str | None]]) -> None:
        """Unchanged (base, platform, digest, index digest) checks; a row holding another
        digest by now is left alone."""

    async def record_first(self, base: str, platform: str, digest: str,
                           index_digest: str | None) -> bool:
        """The first digest of a reference; False (nothing written) when it has one already."""

    async def record_error(self, base: str, platform: str, error: str) -> None: ...

    async def dependencies(self, task: str | None = None) -> list[Dependency]: ...

    async def dependents(self, base: str, platform: str) -> list[Dependency]: ...

    async def record_build(self, task: str, platform: str, base_digests: dict[str, str]
                           ) -> None: ...


class RunStore(Protocol):
    """Run history and the durable queue of runs waiting for a builder."""

    async def create(self, request: RunRequest) -> Run: ...

    async def queue(self, requests: list[RunRequest]) -> list[str]:
        """Queue runs in one transaction: all of them, or none; the new runs' ids, in order.
        A request whose `source_commit.key` a run of its task has already (in any state, even
        while another transaction adds it) is left out: one run per (task, commit)."""

    async def get(self, run_id: str) -> Run | None: ...

    async def list(self, task: str | None = None, status: RunStatus | None = None,
                   top: int = 15, image: str | None = None) -> list[Run]: ...

    async def count_queued(self) -> int: ...

    async def queued(self) -> list[Run]: ...

    async def mark_started(self, run_id: str, daemon: str | None = None) -> bool: ...

    async def queued_since(self, seq: int) -> list[tuple[int, str]]: ...

    async def record_git_revision(self, run_id: str, revision: str) -> None: ...

    async def record_engine(self, run_id: str, engine: str) -> None: ...

    async def cancel_queued(self, run_id: str, reason: str) -> bool: ...

    async def set_archived(self, run_id: str, archived: bool, archive_ref: str | None
                           ) -> None: ...

    async def record_base_digests(self, run_id: str, base_digests: dict[str, str]) -> None: ...

    async def finish(self, run_id: str, status: RunStatus, outputs: list[PushedImage] = (),
                     error: str | None = None) -> None: ...

    async def record_step(self, run_id: str, position: int, step: StepRecord) -> None:
        """How a task file's step ended, kept with the run as it comes (`position`: the
        step's place in the file); a step reported again replaces what it had."""

    async def steps(self, run_id: str) -> list[StepRecord]:
        """The run's recorded steps, in the file's order."""

    async def fail_unfinished(self, reason: str) -> list[tuple[str, str | None]]: ...

    async def cancel_and_requeue(self, run: Run, reason: str) -> str | None: ...

    async def finish_and_requeue(self, run: Run, status: RunStatus, outputs: list[PushedImage],
                                 error: str, cause: str) -> str | None: ...

    async def record_change_and_queue(self, base: str, platform: str, digest: str,
                                      index_digest: str | None,
                                      requests: list[RunRequest]) -> list[str]:
        """Record a base's new digest and queue its runs atomically; the new runs' ids."""

    async def record_fire_and_queue(self, task: str, timer: str, scheduled: datetime,
                                    requests: list[RunRequest]) -> list[str]:
        """Record a timer's fire and queue its runs atomically (none for a fire recorded
        already, nor while the task has a run queued that serves it); the new runs' ids."""

    async def pending_tasks(self) -> set[str]: ...

    async def purge_finished(self, before: datetime, log_candidates: list[str]
                             ) -> tuple[set[str], set[str]]:
        """Delete old finished, unarchived runs; (ids deleted, `log_candidates` still runs)."""

    async def existing(self, run_ids: list[str]) -> set[str]:
        """Those of `run_ids` that are runs (any state)."""


class TimerStore(Protocol):
    """Per (task, timer): the last scheduled fire handled, and the schedule it counts on."""

    async def marks(self) -> list[TimerMark]: ...

    async def start(self, task: str, timer: str, schedule: str, at: datetime) -> None:
        """Count a timer from `at` (a new timer, or a new schedule); none for a task gone."""

    async def forget(self, timers: Iterable[tuple[str, str]]) -> None:
        """Drop the marks of (task, timer) pairs no longer enabled."""


class GitHeadStore(Protocol):
    """The commit each polled (remote, branch) pointed at when last seen."""

    async def heads(self) -> dict[str, dict[str, str]]:
        """Every remote's branches and their commits: {remote: {branch: sha}}."""

    async def set_heads(self, remote: str, heads: dict[str, str]) -> None:
        """The remote's polled branches are now these, with these commits; others forgotten."""

    async def keep_remotes(self, remotes: Collection[str]) -> None:
        """Forget the heads of every other remote (no task polls it any more)."""


class WebhookStore(Protocol):
    """The webhook secrets the daemon keeps per task (registered hooks, hooks added by hand)."""

    async def get(self, task: str) -> TaskWebhook | None: ...

    async def all(self) -> list[TaskWebhook]: ...

    async def put(self, webhook: TaskWebhook) -> None:
        """Keep it, replacing what the task had."""

    async def put_if_absent(self, webhook: TaskWebhook) -> TaskWebhook:
        """Keep it unless the task has one already; what the task has now."""

    async def delete(self, task: str) -> None: ...


class EngineSlots(Protocol):
    """The slots of a pool's build engines that runs hold, whichever daemon runs them."""

    async def claim(self, run_id: str, candidates: Sequence[tuple[str, int]],
                    daemon: str) -> str | None:
        """A slot for the run on one of `candidates` ((engine, its max_concurrent_runs), in
        order of preference): the one with room whose share of slots held is least, the first
        among equals; None when none has room. Atomic however many daemons claim at once; a
        slot the run held already is given up first."""

    async def release(self, run_id: str) -> None:
        """The run's slot free again (nothing when it holds none)."""

    async def loads(self, other_than: str | None = None) -> dict[str, int]:
        """Slots held per engine (engines with none left out), leaving out those of the
        daemon `other_than`."""


class RunLogStore(Protocol):
    """Runs' logs as the database holds them (with PostgreSQL, where every daemon reads them),
    by byte position; a run's log goes with the run."""

    async def append(self, pieces: Sequence[tuple[str, int, bytes]]) -> None:
        """Write (run id, position, bytes) pieces in one transaction; again at the same
        position, the longer bytes replace the shorter."""

    async def read(self, run_id: str, offset: int, limit: int = ...) -> bytes:
        """The log's bytes from `offset` on, about `limit` at most; b"" past its end."""

    async def size(self, run_id: str) -> int:
        """How many bytes of the run's log the database holds."""


class NotificationStore(Protocol):
    """Registry notifications received, by event id, across every daemon on the database."""

    async def first_time(self, event_ids: Collection[str]) -> set[str]:
        """Record the ids; those not recorded before (by any daemon, within a day)."""

    async def forget(self, event_ids: Collection[str]) -> None:
        """Let these events through again (handling them failed)."""


class Store(Protocol):
    """One store, with a view per concept."""

    tasks: TaskStore
    graph: GraphStore
    runs: RunStore
    timers: TimerStore
    git_heads: GitHeadStore
    webhooks: WebhookStore
    engine_slots: EngineSlots
    run_logs: RunLogStore
    notifications: NotificationStore

    async def close(self) -> None: ...
