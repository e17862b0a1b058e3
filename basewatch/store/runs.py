"""Run history, and the queue of runs waiting for a builder (queued runs are persisted)."""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime

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
from basewatch.store.database import Database, from_text, now, to_text
from basewatch.store.timers import mark_text

log = logging.getLogger(__name__)

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
    data: dict = {}
    if (change := request.base_change) is not None:
        data = {"reference": change.reference, "platform": change.platform,
                "digest": change.digest}
    elif (source := request.source_commit) is not None:
        data = {"commit": source.commit, "branch": source.branch,
                "pull_request": source.pull_request, "target_branch": source.target_branch,
                "fetch_ref": source.fetch_ref}
    if request.secret_names:
        data["secret_names"] = list(request.secret_names)
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
        registry=row["registry"], engine=row["engine"],
    )


async def insert_runs(db, requests: list[RunRequest]) -> list[str]:
    """Insert Queued runs inside an open transaction; ids come from a never-reused sequence.
    A commit or pull-request run whose task has a run of that commit already (any state) is
    not inserted: the unique index decides, so concurrent events cannot both get in."""
    if not requests:
        return []
    batch = uuid.uuid4().hex  # a placeholder id per row until the sequence numbers exist
    stamp = to_text(now())
    await db.executemany(
        "INSERT INTO runs (id, task, run_type, trigger, status, platform, reason, queued_at,"
        " not_before, retry_of, spec, run_values, trigger_data, source_key, registry)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (task, source_key) WHERE source_key IS NOT NULL AND retry_of IS NULL"
        " DO NOTHING",
        [(f"{batch}-{n}", r.task, r.run_type.value, r.trigger.value, RunStatus.QUEUED.value,
          r.platform, r.reason, stamp, to_text(r.not_before), r.retry_of, r.spec,
          json.dumps(r.values or {}), _trigger_data(r),
          r.source_commit.key if r.source_commit is not None else None, r.registry)
         for n, r in enumerate(requests)])
    rows = await db.execute_fetchall(
        "UPDATE runs SET id = ? || seq WHERE id LIKE ? RETURNING id, seq",
        (RUN_ID_PREFIX, f"{batch}-%"))
    return [row["id"] for row in sorted(rows, key=lambda row: row["seq"])]


async def insert_run(db, request: RunRequest) -> str:
    (run_id,) = await insert_runs(db, [request])
    return run_id


async def _requeue_once(db, run: Run, cause: str) -> str | None:
    """Queue an interrupted run again, unless it was itself a re-run: nothing is lost, and
    nothing loops."""
    if run.retry_of is not None:
        return None
    return await insert_run(db, RunRequest(run.task, run.trigger, run.run_type, run.platform,
                                           f"re-run of {run.id}, interrupted by {cause}",
                                           retry_of=run.id, spec=run.spec, values=run.values,
                                           base_change=run.base_change,
                                           source_commit=run.source_commit,
                                           secret_names=run.secret_names,
                                           registry=run.registry))


__all__ = ["RUN_ID_PREFIX", "RunRequest", "SQLiteRunStore", "insert_run", "insert_runs"]


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
        row = await self.database.fetchone("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _run(row) if row else None

    async def list(self, task: str | None = None, status: RunStatus | None = None,
                   top: int = 15, image: str | None = None) -> list[Run]:
        """Newest first; `image` matches a pushed image's name, with or without its tag."""
        clauses, params = [], []
        if image is not None:
            clauses.append("EXISTS (SELECT 1 FROM json_each(runs.outputs) o WHERE"
                           " json_extract(o.value, '$.image') = ? OR"
                           " json_extract(o.value, '$.image') LIKE ? ESCAPE '\\')")
            escaped = image.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params += [image, f"{escaped}:%"]
        if task is not None:
            clauses.append("task = ?")
            params.append(task)
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.database.fetchall(
            f"SELECT * FROM runs{where} ORDER BY seq DESC LIMIT ?", (*params, top))
        return [_run(row) for row in rows]

    async def count_queued(self) -> int:
        row = await self.database.fetchone("SELECT COUNT(*) AS n FROM runs WHERE status = ?",
                                           (RunStatus.QUEUED.value,))
        return row["n"]

    async def queued(self) -> list[Run]:
        rows = await self.database.fetchall(
            "SELECT * FROM runs WHERE status = ? ORDER BY seq", (RunStatus.QUEUED.value,))
        return [_run(row) for row in rows]

    async def mark_started(self, run_id: str) -> None:
        async with self.database.transaction() as db:
            await db.execute("UPDATE runs SET status = ?, started_at = ? WHERE id = ?",
                             (RunStatus.RUNNING.value, to_text(now()), run_id))

    async def record_git_revision(self, run_id: str, revision: str) -> None:
        await self._write_retried(run_id, "the git revision",
                                  "UPDATE runs SET git_revision = ? WHERE id = ?",
                                  (revision, run_id))

    async def cancel_queued(self, run_id: str, reason: str) -> bool:
        """Mark a run that has not started Canceled; False when it is not queued (any more)."""
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ? AND status = ?",
                (RunStatus.CANCELED.value, to_text(now()), reason, run_id, RunStatus.QUEUED.value))
            return cursor.rowcount > 0

    async def set_archived(self, run_id: str, archived: bool, archive_ref: str | None) -> None:
        async with self.database.transaction() as db:
            await db.execute("UPDATE runs SET archived = ?, archive_ref = ? WHERE id = ?",
                             (int(archived), archive_ref, run_id))

    async def record_engine(self, run_id: str, engine: str) -> None:
        await self._write_retried(run_id, "its engine", "UPDATE runs SET engine = ? WHERE id = ?",
                                  (engine, run_id))

    async def record_base_digests(self, run_id: str, base_digests: dict[str, str]) -> None:
        await self._write_retried(run_id, "the base digests",
                                  "UPDATE runs SET base_digests = ? WHERE id = ?",
                                  (json.dumps(base_digests), run_id))

    async def finish(self, run_id: str, status: RunStatus, outputs: list[PushedImage] = (),
                     error: str | None = None) -> None:
        await self._write_retried(
            run_id, "the end",
            "UPDATE runs SET status = ?, finished_at = ?, outputs = ?, error = ? WHERE id = ?",
            (status.value, to_text(now()),
             json.dumps([{"image": o.image, "digest": o.digest} for o in outputs]),
             error, run_id))

    async def record_step(self, run_id: str, position: int, step: StepRecord) -> None:
        await self._write_retried(
            run_id, f"step {step.id}",
            "INSERT OR REPLACE INTO run_steps (run_id, position, step_id, kind, action, status,"
            " started_after, seconds, attempts, exit_code, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, position, step.id, step.kind, step.action, step.status,
             step.started_after, step.seconds, step.attempts, step.exit_code, step.error))

    async def steps(self, run_id: str) -> list[StepRecord]:
        rows = await self.database.fetchall(
            "SELECT * FROM run_steps WHERE run_id = ? ORDER BY position", (run_id,))
        return [StepRecord(id=row["step_id"], kind=row["kind"], action=row["action"],
                           status=row["status"], started_after=row["started_after"],
                           seconds=row["seconds"], attempts=row["attempts"],
                           exit_code=row["exit_code"], error=row["error"]) for row in rows]

    async def _write_retried(self, run_id: str, what: str, sql: str, params: tuple) -> None:
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
                    await db.execute(sql, params)

    async def fail_unfinished(self, reason: str) -> list[tuple[str, str | None]]:
        """Mark runs that were in progress when the daemon stopped Failed, and queue each again
        once (a re-run that is itself interrupted is not re-run). Returns (failed, re-run) ids.
        """
        async with self.database.transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT * FROM runs WHERE status IN (?, ?) ORDER BY seq",
                (RunStatus.STARTED.value, RunStatus.RUNNING.value))
            interrupted = [_run(row) for row in rows]
            await db.executemany(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                [(RunStatus.FAILED.value, to_text(now()), reason, run.id)
                 for run in interrupted])
            return [(run.id, await _requeue_once(db, run, "a daemon restart"))
                    for run in interrupted]

    async def cancel_and_requeue(self, run: Run, reason: str) -> str | None:
        """Mark a run Canceled because the daemon is stopping, and queue it again once."""
        async with self.database.transaction() as db:
            await db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                (RunStatus.CANCELED.value, to_text(now()), reason, run.id))
            return await _requeue_once(db, run, "the daemon stopping")

    async def finish_and_requeue(self, run: Run, status: RunStatus, outputs: list[PushedImage],
                                 error: str, cause: str) -> str | None:
        """Record a run's end that was no fault of its own (its build engine went down), and
        queue it again once, in one transaction: the re-run's id, None for a re-run's end."""
        async with self.database.transaction() as db:
            await db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, outputs = ?, error = ? WHERE id = ?",
                (status.value, to_text(now()),
                 json.dumps([{"image": o.image, "digest": o.digest} for o in outputs]),
                 error, run.id))
            return await _requeue_once(db, run, cause)

    async def record_change_and_queue(self, base: str, platform: str, digest: str,
                                      index_digest: str | None,
                                      requests: list[RunRequest]) -> list[str]:
        """Record a new base digest and queue its runs in one transaction, so a crash loses neither.

        A task that already has a queued run for the same trigger gets no second one; that run
        now records this change as the one that fired it (the latest, which it will build on).
        """
        stamp = to_text(now())
        async with self.database.transaction() as db:
            await db.execute(
                "UPDATE watched_digests SET digest = ?, index_digest = ?, checked_at = ?,"
                " changed_at = ?, last_error = NULL WHERE base = ? AND platform = ?",
                (digest, index_digest, stamp, stamp, base, platform))
            pending = {(row["task"], row["trigger"]): row["id"] for row in await db.execute_fetchall(
                "SELECT task, trigger, id FROM runs WHERE status = ?", (RunStatus.QUEUED.value,))}
            new = [r for r in requests if (r.task, r.trigger.value) not in pending]
            queued = await insert_runs(db, new)
            # Still settling: a further push extends the window instead of adding a run.
            await db.executemany(
                "UPDATE runs SET not_before = MAX(COALESCE(not_before, ''), ?) WHERE id = ?",
                [(to_text(r.not_before), pending[(r.task, r.trigger.value)]) for r in requests
                 if r.not_before is not None and (r.task, r.trigger.value) in pending])
            await db.executemany(
                "UPDATE runs SET trigger_data = ? WHERE id = ?",
                [(_trigger_data(r), pending[(r.task, r.trigger.value)])
                 for r in requests
                 if r.base_change is not None and (r.task, r.trigger.value) in pending])
        return queued

    async def record_fire_and_queue(self, task: str, timer: str, scheduled: datetime,
                                    requests: list[RunRequest]) -> list[str]:
        """Record that `timer` of `task` fired for `scheduled` and queue its runs, in one
        transaction; the new runs' ids.

        Nothing is queued for a fire already recorded (or of a timer no longer counted), nor
        while the task has a run queued that builds what a timer run would: its context as it
        stands, with no values of its own (not a pull request's head); that run serves the fire.
        """
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "UPDATE timer_marks SET last_scheduled = ? WHERE task = ? AND timer = ?"
                " AND julianday(last_scheduled) < julianday(?)",
                (mark_text(scheduled), task, timer, mark_text(scheduled)))
            if cursor.rowcount == 0:
                return []
            serving = {row["task"] for row in await db.execute_fetchall(
                "SELECT DISTINCT task FROM runs WHERE status = ? AND trigger != ?"
                " AND run_values = '{}' AND spec IS NULL",
                (RunStatus.QUEUED.value, Trigger.PULL_REQUEST.value))}
            return await insert_runs(db, [r for r in requests if r.task not in serving])

    async def pending_tasks(self) -> set[str]:
        """Tasks with a run queued or in progress."""
        rows = await self.database.fetchall(
            "SELECT DISTINCT task FROM runs WHERE status IN (?, ?, ?)",
            (RunStatus.QUEUED.value, RunStatus.STARTED.value, RunStatus.RUNNING.value))
        return {row["task"] for row in rows}

    async def purge_finished(self, before: datetime, log_candidates: list[str]
                             ) -> tuple[set[str], set[str]]:
        """Delete finished, unarchived runs that finished (or, without a finish time, were
        queued) before `before`, in one transaction; (the ids deleted, those of
        `log_candidates` that are still runs)."""
        unfinished = tuple(status.value for status in RunStatus if not status.finished)
        marks = ", ".join("?" * len(unfinished))
        async with self.database.transaction() as db:
            # julianday() compares instants, whatever offset or precision the text was
            # written with.
            deleted = await db.execute_fetchall(
                f"DELETE FROM runs WHERE archived = 0 AND status NOT IN ({marks})"
                " AND julianday(COALESCE(finished_at, queued_at)) < julianday(?) RETURNING id",
                (*unfinished, to_text(before)))
            known: set[str] = set()
            for start in range(0, len(log_candidates), _ID_BATCH):
                batch = log_candidates[start:start + _ID_BATCH]
                rows = await db.execute_fetchall(
                    f"SELECT id FROM runs WHERE id IN ({', '.join('?' * len(batch))})", batch)
                known.update(row["id"] for row in rows)
        return {row["id"] for row in deleted}, known
