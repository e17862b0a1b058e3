"""Several daemons on one PostgreSQL: each one's row and heartbeat, the lock that makes one of
them the leader, and the reaping of what a dead daemon held.

A daemon is alive while it holds its liveness lock (a session advisory lock on a connection of
its own, which PostgreSQL releases the moment that connection closes: a SIGKILL frees it at
once) and renews its heartbeat within its lease. A daemon that fails either is dead to the
others: the first to see it fails its runs in progress and queues each again once, frees its
engine slots and removes its row, in one transaction.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

from sqlalchemy import delete, or_, select, update

from basewatch.errors import StoreBusyError
from basewatch.models import RunStatus
from basewatch.store.database import Database, from_text, now, to_text
from basewatch.store.runs import RUNS_CHANNEL, _requeue_once, _run, held_by, uploaded_context
from basewatch.store.schema import daemons, engine_slots, runs

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

# Session advisory locks. The leader's is one bigint key; each daemon's liveness lock is a
# (class, key) pair, which PostgreSQL keeps apart from bigint keys.
LEADER_LOCK = 0x62776C64  # "bwld"
LIVENESS_CLASS = 0x62776476  # "bwdv"
CONNECT_TIMEOUT_SECONDS = 10.0


def liveness_key(daemon_id: str) -> int:
    return int.from_bytes(hashlib.sha256(daemon_id.encode()).digest()[:4], "big", signed=True)


@dataclass(frozen=True)
class DaemonRow:
    id: str
    name: str
    started_at: datetime
    heartbeat_at: datetime
    listen: str | None


@contextlib.contextmanager
def _unreachable_as_busy():
    # The driver imported where it is used: a daemon on SQLite never loads it.
    import asyncpg

    try:
        yield
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        raise StoreBusyError(f"{type(error).__name__}: {error}") from error


class DaemonSession:
    """A PostgreSQL connection of this daemon's own, held for its life: the locks that say it
    is alive and that it leads, and the channel on which it hears that runs were queued."""

    def __init__(self, connection: asyncpg.Connection, daemon_id: str):
        self._connection = connection
        self.daemon_id = daemon_id
        self.leading = False

    @classmethod
    async def open(cls, database: Database, daemon_id: str,
                   on_runs_queued: Callable[[], None]) -> "DaemonSession":
        import asyncpg

        url = database.engine.url
        # As the pool's connections are made: TLS when the URL asks for it (?ssl=require).
        ssl = url.query.get("ssl") or url.query.get("sslmode")
        with _unreachable_as_busy():
            connection = await asyncpg.connect(
                host=url.host, port=url.port, user=url.username, password=url.password,
                database=url.database, timeout=CONNECT_TIMEOUT_SECONDS,
                **({"ssl": ssl} if ssl else {}))
        try:
            with _unreachable_as_busy():
                await connection.execute("SELECT pg_advisory_lock($1, $2)", LIVENESS_CLASS,
                                         liveness_key(daemon_id))
                await connection.add_listener(RUNS_CHANNEL, lambda *_: on_runs_queued())
        except BaseException:
            connection.terminate()
            raise
        return cls(connection, daemon_id)

    @property
    def closed(self) -> bool:
        return self._connection.is_closed()

    async def lead(self) -> bool:
        """Try to become the leader (or check that this daemon still is): True while it is.
        A lost connection lost the lock with it: StoreBusyError, and no longer leading."""
        try:
            with _unreachable_as_busy():
                if self.leading:
                    await self._connection.fetchval("SELECT 1")
                else:
                    self.leading = await self._connection.fetchval(
                        "SELECT pg_try_advisory_lock($1)", LEADER_LOCK)
        except StoreBusyError:
            self.leading = False
            raise
        return self.leading

    async def alive(self, daemon_id: str) -> bool:
        """Whether the daemon `daemon_id` still holds its liveness lock."""
        key = liveness_key(daemon_id)
        with _unreachable_as_busy():
            if await self._connection.fetchval("SELECT pg_try_advisory_lock($1, $2)",
                                               LIVENESS_CLASS, key):
                await self._connection.execute("SELECT pg_advisory_unlock($1, $2)",
                                               LIVENESS_CLASS, key)
                return False
        return True

    async def close(self) -> None:
        """Closing the connection releases both locks."""
        self.leading = False
        with contextlib.suppress(Exception):
            await self._connection.close(timeout=5)
        if not self._connection.is_closed():
            self._connection.terminate()


class ClusterStore:
    def __init__(self, database: Database):
        self.database = database

    async def join(self, daemon_id: str, name: str, listen: str | None) -> None:
        stamp = to_text(now())
        insert = self.database.insert(daemons)
        async with self.database.transaction() as db:
            await db.execute(insert.values(id=daemon_id, name=name, started_at=stamp,
                                           heartbeat_at=stamp, listen=listen)
                             .on_conflict_do_update(index_elements=[daemons.c.id],
                                                    set_={"heartbeat_at": stamp}))

    async def heartbeat(self, daemon_id: str) -> bool:
        """Renew this daemon's lease; False when its row is gone (others took it for dead)."""
        async with self.database.transaction() as db:
            result = await db.execute(update(daemons).where(daemons.c.id == daemon_id)
                                      .values(heartbeat_at=to_text(now())))
            return result.rowcount > 0

    async def leave(self, daemon_id: str) -> None:
        async with self.database.transaction() as db:
            await db.execute(delete(engine_slots).where(engine_slots.c.daemon == daemon_id))
            await db.execute(delete(daemons).where(daemons.c.id == daemon_id))

    async def daemons(self) -> list[DaemonRow]:
        # By name: /healthz lists them in an order a person can compare across daemons.
        rows = await self.database.fetchall(
            select(daemons).order_by(daemons.c.name, daemons.c.started_at))
        return [DaemonRow(row["id"], row["name"], from_text(row["started_at"]),
                          from_text(row["heartbeat_at"]), row["listen"]) for row in rows]

    @staticmethod
    def expired(row: DaemonRow, lease: timedelta) -> bool:
        return row.heartbeat_at < now() - lease

    async def adopt(self, daemon_id: str, uploads: set[str]) -> list[str]:
        """Take over the queued runs held for a daemon that no longer stands whose uploaded
        context is one of `uploads` (this daemon's own state_dir: the same daemon restarted)
        and which need no secrets (held in memory only, they died with it): their ids.

        Called as a daemon joins, before it reaps: another daemon reaping first fails them
        as stranded, with the message a person sees today. Rows another daemon is reaping
        are skipped."""
        async with self.database.transaction() as db:
            rows = (await db.execute(
                select(runs).where(runs.c.status == RunStatus.QUEUED.value,
                                   runs.c.daemon.is_not(None), runs.c.daemon != daemon_id,
                                   runs.c.daemon.not_in(select(daemons.c.id)))
                .order_by(runs.c.seq).with_for_update(skip_locked=True))).mappings()
            adopted = [run.id for run in map(_run, rows)
                       if not run.secret_names and uploaded_context(run) in uploads]
            if adopted:
                await db.execute(update(runs).where(runs.c.id.in_(adopted))
                                 .values(daemon=daemon_id))
        return adopted

    async def reap(self, dead: list[DaemonRow]) -> list[tuple[str, str | None]]:
        """Fail the runs in progress of the daemons `dead` (and of none: a run claimed by no
        daemon that still stands, which only an older version leaves), queue each again
        once, free their engine slots and remove their rows, in one transaction: (failed,
        re-run) ids. Rows locked by another daemon reaping them are skipped."""
        names = {row.id: row.name for row in dead}
        unfinished = [RunStatus.STARTED.value, RunStatus.RUNNING.value]
        async with self.database.transaction() as db:
            owner_gone = or_(runs.c.daemon.is_(None), runs.c.daemon.in_(list(names)),
                             runs.c.daemon.not_in(select(daemons.c.id)))
            rows = (await db.execute(
                select(runs).where(runs.c.status.in_(unfinished), owner_gone)
                .order_by(runs.c.seq).with_for_update(skip_locked=True))).mappings()
            interrupted = [_run(row) for row in rows]
            reaped = []
            for run in interrupted:
                name = names.get(run.daemon or "", "an earlier daemon")
                needed = held_by(run) is not None  # its upload or secrets died with it
                await db.execute(update(runs).where(runs.c.id == run.id).values(
                    status=RunStatus.FAILED.value, finished_at=to_text(now()),
                    error=f"the daemon {name} stopped while the run was in progress"
                    + (" (it held the run's uploaded context or secrets, so it is not run "
                       "again)" if needed else "")))
                reaped.append((run.id, None if needed else await _requeue_once(
                    db, run, f"the daemon {name} stopping")))
            # Queued for a daemon that is gone: what it needs went with that daemon (a
            # daemon restarted on its state_dir adopts first what it still holds: adopt).
            stranded = (await db.execute(
                select(runs.c.id, runs.c.daemon).where(
                    runs.c.status == RunStatus.QUEUED.value, runs.c.daemon.is_not(None),
                    or_(runs.c.daemon.in_(list(names)),
                        runs.c.daemon.not_in(select(daemons.c.id))))
                .with_for_update(skip_locked=True))).all()
            for run_id, daemon in stranded:
                await db.execute(update(runs).where(runs.c.id == run_id).values(
                    status=RunStatus.FAILED.value, finished_at=to_text(now()),
                    error=f"the daemon {names.get(daemon, daemon.partition('/')[0])} that "
                          "held its uploaded context or secrets stopped before it ran"))
                reaped.append((run_id, None))
            if names:
                await db.execute(delete(engine_slots).where(engine_slots.c.daemon.in_(list(names))))
                await db.execute(delete(daemons).where(daemons.c.id.in_(list(names))))
            await db.execute(delete(engine_slots).where(
                engine_slots.c.daemon.not_in(select(daemons.c.id))))
        return reaped

