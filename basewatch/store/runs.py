"""Run history, and the queue of runs waiting for a builder (queued runs are persisted)."""
from __future__ import annotations

import functools
import json
import logging
from datetime import datetime

from sqlalchemy import (
    Text,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from basewatch.errors import StoreBusyError
from basewatch.models import (
    RUN_ID_PREFIX,
    BaseChange,
    PushedImage,
    Run,
    RunRequest,
    RunStatus,
    RunType,
    SourceCommit,
    StepRecord,
    Trigger,
)
from basewatch.store.database import Database, from_text, lock_queueing, now, to_text
from basewatch.store.schema import (
    SOURCE_KEY_WHERE,
    run_steps,
    runs,
    timer_marks,
    watched_digests,
)
from basewatch.store.timers import mark_text

log = logging.getLogger(__name__)

RUNS_CHANNEL = "basewatch_runs"  # PostgreSQL NOTIFY channel: runs were queued
_ID_BATCH = 500  # ids bound in one statement: well under SQLite's limit on parameters
# What a run records as it goes, and its end, are written again while the database refuses
# them (another process holding the write lock past busy_timeout, a full disk): for long enough
# to outlast a backup or a vacuum, so the run does not stay Running and hold back the tasks
# built on it.
FINISH_RETRY_SECONDS = 600.0
FINISH_RETRY_WAIT_SECONDS = 1.0
FINISH_RETRY_MAX_WAIT_SECONDS = 30.0


def _trigger_data(request: RunRequest) -> str | None:
    """What fired a run, as the `trigger_data` column keeps it (JSON), and the names (never
    the values) of its secrets."""
    return _fired_json(request.base_change, request.source_commit,
                       tuple(request.secret_names))


# A fan-out's 10,000 runs share what fired them: encoded once, not once each.
@functools.lru_cache(maxsize=256)
def _fired_json(change: BaseChange | None, source: SourceCommit | None,
                secret_names: tuple[str, ...]) -> str | None:
    data: dict = {}
    if change is not None:
        data = {"reference": change.reference, "platform": change.platform,
                "digest": change.digest}
    elif source is not None:
        data = {"commit": source.commit, "branch": source.branch,
                "pull_request": source.pull_request, "target_branch": source.target_branch,
                "fetch_ref": source.fetch_ref}
    if secret_names:
        data["secret_names"] = list(secret_names)
    return json.dumps(data) if data else None


def _fired_by(text: str | None
              ) -> tuple[BaseChange | None, SourceCommit | None, tuple[str, ...]]:
    data = json.loads(text) if text else {}
    secret_names = tuple(data.pop("secret_names", ()))
    if "reference" in data:
        return BaseChange(**data), None, secret_names
    if "commit" in data:
        return None, SourceCommit(**data), secret_names
    return None, None, secret_names


def _run(row) -> Run:
    base_change, source_commit, secret_names = _fired_by(row["trigger_data"])
    return Run(
        id=row["id"], task=row["task"], trigger=Trigger(row["trigger"]),
        run_type=RunType(row["run_type"]), status=RunStatus(row["status"]),
        platform=row["platform"], reason=row["reason"], queued_at=from_text(row["queued_at"]),
        started_at=from_text(row["started_at"]), finished_at=from_text(row["finished_at"]),
        base_digests=json.loads(row["base_digests"]),
        outputs=[PushedImage(**o) for o in json.loads(row["outputs"])], error=row["error"],
        not_before=from_text(row["not_before"]), retry_of=row["retry_of"], spec=row["spec"],
        values=json.loads(row["run_values"]), git_revision=row["git_revision"],
        archived=bool(row["archived"]), archive_ref=row["archive_ref"],
        base_change=base_change, source_commit=source_commit, secret_names=secret_names,
        registry=row["registry"], engine=row["engine"], daemon=row["daemon"],
    )


async def insert_runs(db, requests: list[RunRequest]) -> list[str]:
    """Insert Queued runs inside an open transaction; ids come from a never-reused sequence.
    A commit or pull-request run whose task has a run of that commit already (any state) is
    not inserted: the unique index decides, so concurrent events cannot both get in."""
    if not requests:
        return []
    # Numbered first, so each row is written once with its id (not inserted, then renumbered
    # by an UPDATE of every row: the larger part of queueing 10,000 runs).
    seqs = await _next_seqs(db, len(requests))
    stamp = to_text(now())
    dialect = sqlite if db.dialect.name == "sqlite" else postgresql
    insert = dialect.insert(runs).on_conflict_do_nothing(
        index_elements=[runs.c.task, runs.c.source_key], index_where=SOURCE_KEY_WHERE)
    rows = [{"seq": seq, "id": f"{RUN_ID_PREFIX}{seq}", "task": r.task,
             "run_type": r.run_type.value, "trigger": r.trigger.value,
             "status": RunStatus.QUEUED.value, "platform": r.platform, "reason": r.reason,
             "queued_at": stamp, "not_before": to_text(r.not_before),
             "retry_of": r.retry_of, "spec": r.spec,
             "run_values": json.dumps(r.values) if r.values else "{}",
             "trigger_data": _trigger_data(r),
             "source_key": r.source_commit.key if r.source_commit is not None else None,
             "registry": r.registry, "daemon": r.daemon}
            for seq, r in zip(seqs, requests)]
    if any(row["source_key"] is not None for row in rows):
        # Only these can be left out; which were is what the insert returns.
        inserted = set((await db.execute(insert.returning(runs.c.seq), rows)).scalars())
    else:
        await db.execute(insert, rows)
        inserted = set(seqs)
    if db.dialect.name == "postgresql":
        # Every daemon's queue listens (store/cluster.py): it hears of the runs as this
        # transaction commits, not at its next read.
        await db.execute(text("SELECT pg_notify(:channel, '')"), {"channel": RUNS_CHANNEL})
    return [row["id"] for row in rows if row["seq"] in inserted]


async def _next_seqs(db, count: int) -> list[int]:
    """`count` sequence numbers for new runs, in order, as inserting them would have taken:
    PostgreSQL's sequence (taken before commit, as an insert takes them); on SQLite, past both
    the largest ever given (AUTOINCREMENT's sqlite_sequence) and the largest present. The
    transaction holds SQLite's write lock, so no one else takes numbers meanwhile."""
    if db.dialect.name == "postgresql":
        taken = await db.execute(
            text("SELECT nextval(pg_get_serial_sequence('runs', 'seq'))"
                 " FROM generate_series(1, :count)"), {"count": count})
        return sorted(taken.scalars())
    last = (await db.execute(text(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'runs'), 0),"
        " coalesce((SELECT max(seq) FROM runs), 0))"))).scalar_one()
    return list(range(last + 1, last + 1 + count))


async def insert_run(db, request: RunRequest) -> str:
    (run_id,) = await insert_runs(db, [request])
    return run_id


def held_by(run: Run) -> str | None:
    """The daemon a run needs (several on one database): the one that holds its uploaded
    context or its secrets, which no other daemon has."""
    if run.daemon is None or not (run.secret_names or uploaded_context(run)):
        return None
    return run.daemon


def uploaded_context(run: Run) -> str | None:
    """The folder of a quick run's uploaded context on the disk of the daemon that took it."""
    try:
        path = json.loads(run.spec or "{}").get("context_path")
    except (ValueError, AttributeError):
        return None
    return path if isinstance(path, str) and path else None


async def _requeue_once(db, run: Run, cause: str) -> str | None:
    """Queue an interrupted run again, unless it was itself a re-run: nothing is lost, and
    nothing loops. On PostgreSQL a run that needs its daemon's upload or secrets goes back to
    that daemon (one that stopped for good fails it: store/cluster.py)."""
    if run.retry_of is not None:
        return None
    daemon = held_by(run) if db.dialect.name == "postgresql" else None
    return await insert_run(db, RunRequest(run.task, run.trigger, run.run_type, run.platform,
                                           f"re-run of {run.id}, interrupted by {cause}",
                                           retry_of=run.id, spec=run.spec, values=run.values,
                                           base_change=run.base_change,
                                           source_commit=run.source_commit,
                                           secret_names=run.secret_names,
                                           registry=run.registry, daemon=daemon))


__all__ = ["RUN_ID_PREFIX", "RunRequest", "SQLiteRunStore", "insert_run", "insert_runs"]


def _set_by_id(**values):
    """An UPDATE of one run, its id bound as `b_id`: for executing with many rows."""
    return update(runs).where(runs.c.id == bindparam("b_id")).values(**values)


class SQLiteRunStore:
    def __init__(self, database: Database):
        self.database = database

    async def create(self, request: RunRequest) -> Run:
        (run_id,) = await self.queue([request])
        return await self.get(run_id)

    async def queue(self, requests: list[RunRequest]) -> list[str]:
        """Queue runs in one transaction: all of them, or (on an error) none; the new runs'
        ids. A commit already run for a task (its source_commit's key) is left out."""
        async with self.database.transaction() as db:
            return await insert_runs(db, requests)

    async def get(self, run_id: str) -> Run | None:
        row = await self.database.fetchone(select(runs).where(runs.c.id == run_id))
        return _run(row) if row else None

    async def list(self, task: str | None = None, status: RunStatus | None = None,
                   top: int = 15, image: str | None = None) -> list[Run]:
        """Newest first; `image` matches a pushed image's name, with or without its tag."""
        query = select(runs).order_by(runs.c.seq.desc()).limit(top)
        if image is not None:
            query = query.where(self._pushed(image))
        if task is not None:
            query = query.where(runs.c.task == task)
        if status is not None:
            query = query.where(runs.c.status == status.value)
        return [_run(row) for row in await self.database.fetchall(query)]

    def _pushed(self, image: str):
        """Whether a run's outputs (a JSON list of {image, digest}) hold `image`, tagged or not."""
        escaped = image.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params = {"image": image, "tagged": f"{escaped}:%"}
        if self.database.dialect == "sqlite":
            return text("EXISTS (SELECT 1 FROM json_each(runs.outputs) o WHERE"
                        " json_extract(o.value, '$.image') = :image OR"
                        " json_extract(o.value, '$.image') LIKE :tagged ESCAPE '\\')"
                        ).bindparams(**params)
        return text("EXISTS (SELECT 1 FROM jsonb_array_elements(CAST(runs.outputs AS jsonb)) o"
                    " WHERE o->>'image' = :image OR o->>'image' LIKE :tagged ESCAPE '\\')"
                    ).bindparams(**params)

    async def count_queued(self) -> int:
        row = await self.database.fetchone(
            select(func.count().label("n")).select_from(runs)
            .where(runs.c.status == RunStatus.QUEUED.value))
        return row["n"]

    async def queued(self) -> list[Run]:
        rows = await self.database.fetchall(
            select(runs).where(runs.c.status == RunStatus.QUEUED.value).order_by(runs.c.seq))
        return [_run(row) for row in rows]

    async def mark_started(self, run_id: str, daemon: str | None = None) -> bool:
        """Claim a queued run for `daemon` and mark it Running; False when it is not queued
        any more (another daemon claimed it, or it was canceled). On PostgreSQL the row is
        taken with FOR UPDATE SKIP LOCKED: of daemons claiming it at once, one gets it and
        the others pass over it without waiting."""
        claimable = select(runs.c.id).where(
            runs.c.id == run_id, runs.c.status == RunStatus.QUEUED.value,
            or_(runs.c.daemon.is_(None), runs.c.daemon == daemon))  # one held for a daemon
        if self.database.dialect == "postgresql":
            claimable = claimable.with_for_update(skip_locked=True)
        async with self.database.transaction() as db:
            result = await db.execute(
                update(runs).where(runs.c.id.in_(claimable.scalar_subquery()),
                                   runs.c.status == RunStatus.QUEUED.value)
                .values(status=RunStatus.RUNNING.value, started_at=to_text(now()),
                        daemon=daemon))
            return result.rowcount > 0

    async def queued_since(self, seq: int) -> list[tuple[int, str]]:
        """(seq, id) of the runs queued after `seq`, oldest first: what another daemon queued
        since this one last looked (runs are only ever added, so a run queued again is new)."""
        rows = await self.database.fetchall(
            select(runs.c.seq, runs.c.id)
            .where(runs.c.seq > seq, runs.c.status == RunStatus.QUEUED.value)
            .order_by(runs.c.seq))
        return [(row["seq"], row["id"]) for row in rows]

    async def record_git_revision(self, run_id: str, revision: str) -> None:
        await self._write_retried(run_id, "the git revision",
                                  update(runs).where(runs.c.id == run_id)
                                  .values(git_revision=revision))

    async def cancel_queued(self, run_id: str, reason: str) -> bool:
        """Mark a run that has not started Canceled; False when it is not queued (any more)."""
        async with self.database.transaction() as db:
            result = await db.execute(
                update(runs).where(runs.c.id == run_id, runs.c.status == RunStatus.QUEUED.value)
                .values(status=RunStatus.CANCELED.value, finished_at=to_text(now()),
                        error=reason))
            return result.rowcount > 0

    async def set_archived(self, run_id: str, archived: bool, archive_ref: str | None) -> None:
        async with self.database.transaction() as db:
            await db.execute(update(runs).where(runs.c.id == run_id).values(
                archived=int(archived), archive_ref=archive_ref))

    async def record_engine(self, run_id: str, engine: str) -> None:
        await self._write_retried(run_id, "its engine",
                                  update(runs).where(runs.c.id == run_id).values(engine=engine))

    async def record_base_digests(self, run_id: str, base_digests: dict[str, str]) -> None:
        await self._write_retried(run_id, "the base digests",
                                  update(runs).where(runs.c.id == run_id)
                                  .values(base_digests=json.dumps(base_digests)))

    async def finish(self, run_id: str, status: RunStatus, outputs: list[PushedImage] = (),
                     error: str | None = None) -> None:
        await self._write_retried(
            run_id, "the end",
            update(runs).where(runs.c.id == run_id).values(
                status=status.value, finished_at=to_text(now()),
                outputs=json.dumps([{"image": o.image, "digest": o.digest} for o in outputs]),
                error=error))

    async def record_step(self, run_id: str, position: int, step: StepRecord) -> None:
        values = {"run_id": run_id, "position": position, "step_id": step.id,
                  "kind": step.kind, "action": step.action, "status": step.status,
                  "started_after": step.started_after, "seconds": step.seconds,
                  "attempts": step.attempts, "exit_code": step.exit_code, "error": step.error}
        insert = self.database.insert(run_steps).values(values)
        await self._write_retried(
            run_id, f"step {step.id}",
            insert.on_conflict_do_update(
                index_elements=[run_steps.c.run_id, run_steps.c.step_id],
                set_={name: insert.excluded[name] for name in values
                      if name not in ("run_id", "step_id")}))

    async def steps(self, run_id: str) -> list[StepRecord]:
        rows = await self.database.fetchall(
            select(run_steps).where(run_steps.c.run_id == run_id).order_by(run_steps.c.position))
        return [StepRecord(id=row["step_id"], kind=row["kind"], action=row["action"],
                           status=row["status"], started_after=row["started_after"],
                           seconds=row["seconds"], attempts=row["attempts"],
                           exit_code=row["exit_code"], error=row["error"]) for row in rows]

    async def _write_retried(self, run_id: str, what: str, statement) -> None:
        """A write to a run in progress, retried while the database is locked or full."""

        def retrying(state) -> None:
            log.warning("cannot record %s of run %s (%s); trying again", what, run_id,
                        state.outcome.exception())

        async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(StoreBusyError),
                stop=stop_after_delay(FINISH_RETRY_SECONDS),
                wait=wait_exponential(multiplier=FINISH_RETRY_WAIT_SECONDS,
                                      max=FINISH_RETRY_MAX_WAIT_SECONDS),
                before_sleep=retrying, reraise=True):
            with attempt:
                async with self.database.transaction() as db:
                    await db.execute(statement)

    async def fail_unfinished(self, reason: str) -> list[tuple[str, str | None]]:
        """Mark runs that were in progress when the daemon stopped Failed, and queue each again
        once (a re-run that is itself interrupted is not re-run). Returns (failed, re-run) ids.
        """
        async with self.database.transaction() as db:
            rows = (await db.execute(
                select(runs).where(runs.c.status.in_(
                    [RunStatus.STARTED.value, RunStatus.RUNNING.value])).order_by(runs.c.seq)
            )).mappings()
            interrupted = [_run(row) for row in rows]
            if interrupted:
                await db.execute(
                    _set_by_id(status=RunStatus.FAILED.value, finished_at=to_text(now()),
                               error=reason),
                    [{"b_id": run.id} for run in interrupted])
            return [(run.id, await _requeue_once(db, run, "a daemon restart"))
                    for run in interrupted]

    async def cancel_and_requeue(self, run: Run, reason: str) -> str | None:
        """Mark a run Canceled because the daemon is stopping, and queue it again once."""
        async with self.database.transaction() as db:
            await db.execute(update(runs).where(runs.c.id == run.id).values(
                status=RunStatus.CANCELED.value, finished_at=to_text(now()), error=reason))
            return await _requeue_once(db, run, "the daemon stopping")

    async def finish_and_requeue(self, run: Run, status: RunStatus, outputs: list[PushedImage],
                                 error: str, cause: str) -> str | None:
        """Record a run's end that was no fault of its own (its build engine went down), and
        queue it again once, in one transaction: the re-run's id, None for a re-run's end."""
        async with self.database.transaction() as db:
            await db.execute(update(runs).where(runs.c.id == run.id).values(
                status=status.value, finished_at=to_text(now()),
                outputs=json.dumps([{"image": o.image, "digest": o.digest} for o in outputs]),
                error=error))
            return await _requeue_once(db, run, cause)

    async def record_change_and_queue(self, base: str, platform: str, digest: str,
                                      index_digest: str | None,
                                      requests: list[RunRequest]) -> list[str]:
        """Record a new base digest and queue its runs in one transaction, so a crash loses neither.

        A task that already has a queued run for the same trigger gets no second one; that run
        now records this change as the one that fired it (the latest, which it will build on).
        A digest the store has already (another daemon saw the change first, or this one saw it
        twice) queues nothing: []. Both hold across daemons sharing the database.
        """
        stamp = to_text(now())
        async with self.database.transaction() as db:
            await lock_queueing(db)
            recorded = await db.execute(
                update(watched_digests)
                .where(watched_digests.c.base == base, watched_digests.c.platform == platform,
                       watched_digests.c.digest.is_distinct_from(digest))
                .values(digest=digest, index_digest=index_digest, checked_at=stamp,
                        changed_at=stamp, last_error=None))
            if recorded.rowcount == 0:
                return []
            queued_runs = select(runs.c.task, runs.c.trigger, runs.c.id) \
                .where(runs.c.status == RunStatus.QUEUED.value)
            names = {r.task for r in requests}
            if len(names) <= _ID_BATCH:
                # A base with a few dependents, while thousands of runs wait: only theirs.
                queued_runs = queued_runs.where(runs.c.task.in_(sorted(names)))
            pending = {(row.task, row.trigger): row.id
                       for row in await db.execute(queued_runs)}
            keyed = [((r.task, r.trigger.value), r) for r in requests]
            queued = await insert_runs(db, [r for key, r in keyed if key not in pending])
            waiting = [(pending[key], r) for key, r in keyed if key in pending]
            # Still settling: a further push extends the window instead of adding a run.
            extended = [{"b_id": run_id, "b_not_before": to_text(r.not_before)}
                        for run_id, r in waiting if r.not_before is not None]
            if extended:
                later = bindparam("b_not_before", type_=Text)
                await db.execute(_set_by_id(not_before=case(
                    (func.coalesce(runs.c.not_before, "") < later, later),
                    else_=runs.c.not_before)), extended)
            fired = [{"b_id": run_id, "trigger_data": _trigger_data(r)}
                     for run_id, r in waiting if r.base_change is not None]
            if fired:
                await db.execute(_set_by_id(trigger_data=bindparam("trigger_data")), fired)
        return queued

    async def record_fire_and_queue(self, task: str, timer: str, scheduled: datetime,
                                    requests: list[RunRequest]) -> list[str]:
        """Record that `timer` of `task` fired for `scheduled` and queue its runs, in one
        transaction; the new runs' ids.

        Nothing is queued for a fire already recorded (or of a timer no longer counted), nor
        while the task has a run queued that builds what a timer run would: its context as it
        stands, with no values of its own (not a pull request's head); that run serves the fire.
        """
        instant = self.database.instant
        mark = mark_text(scheduled)
        async with self.database.transaction() as db:
            await lock_queueing(db)
            result = await db.execute(
                update(timer_marks)
                .where(timer_marks.c.task == task, timer_marks.c.timer == timer,
                       instant(timer_marks.c.last_scheduled) < instant(literal(mark, Text)))
                .values(last_scheduled=mark))
            if result.rowcount == 0:
                return []
            serving = set((await db.execute(
                select(runs.c.task).distinct()
                .where(runs.c.status == RunStatus.QUEUED.value,
                       runs.c.trigger != Trigger.PULL_REQUEST.value,
                       runs.c.run_values == "{}", runs.c.spec.is_(None)))).scalars())
            return await insert_runs(db, [r for r in requests if r.task not in serving])

    async def pending_tasks(self) -> set[str]:
        """Tasks with a run queued or in progress."""
        rows = await self.database.fetchall(
            select(runs.c.task).distinct().where(runs.c.status.in_(
                [RunStatus.QUEUED.value, RunStatus.STARTED.value, RunStatus.RUNNING.value])))
        return {row["task"] for row in rows}

    async def purge_finished(self, before: datetime, log_candidates: list[str]
                             ) -> tuple[set[str], set[str]]:
        """Delete finished, unarchived runs that finished (or, without a finish time, were
        queued) before `before`, in one transaction; (the ids deleted, those of
        `log_candidates` that are still runs)."""
        unfinished = [status.value for status in RunStatus if not status.finished]
        instant = self.database.instant
        async with self.database.transaction() as db:
            # Compared as instants, whatever offset or precision the text was written with.
            deleted = (await db.execute(
                delete(runs)
                .where(runs.c.archived == 0, runs.c.status.not_in(unfinished),
                       instant(func.coalesce(runs.c.finished_at, runs.c.queued_at))
                       < instant(literal(to_text(before), Text)))
                .returning(runs.c.id))).scalars().all()
            known = await _existing(db, log_candidates)
        return set(deleted), known

    async def existing(self, run_ids: list[str]) -> set[str]:
        """Those of `run_ids` that are runs (any state)."""
        found: set[str] = set()
        for start in range(0, len(run_ids), _ID_BATCH):
            found.update(row["id"] for row in await self.database.fetchall(
                select(runs.c.id).where(runs.c.id.in_(run_ids[start:start + _ID_BATCH]))))
        return found


async def _existing(db, run_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(run_ids), _ID_BATCH):
        batch = run_ids[start:start + _ID_BATCH]
        found.update((await db.execute(select(runs.c.id).where(runs.c.id.in_(batch)))).scalars())
    return found
