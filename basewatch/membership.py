"""This daemon among the others sharing one PostgreSQL database: who it is, whether it leads
the watch, its heartbeat, and the reaping of what dead daemons held (docs/scale-out.md).

With SQLite (one daemon by construction) it is always the leader and nothing beats: a run left
in progress by a daemon that died is failed when the daemon next starts, as it always was.

On PostgreSQL, every `heartbeat_seconds` the daemon renews its lease, tries for the leader's
lock (or checks it still holds it) and looks at the other daemons: one whose lease expired,
or whose liveness lock is free (its connection closed: the process is gone), is dead, and its
runs in progress are failed and queued again once. A leader whose own connection breaks stops
leading at once; whichever daemon next takes the lock leads.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import timedelta
from typing import Callable

from basewatch.config import ClusterSettings
from basewatch.errors import StoreBusyError
from basewatch.store import DaemonSession, Store

log = logging.getLogger(__name__)


def default_name() -> str:
    """The host's name and the process id: unique on one host, and readable."""
    host = socket.gethostname().split(".")[0] or "basewatch"
    return f"{host}-{os.getpid()}"


class Membership:
    def __init__(self, store: Store, settings: ClusterSettings, listen: str | None = None,
                 on_leading: Callable[[bool], None] | None = None,
                 on_rerun: Callable[[str], None] | None = None,
                 on_runs_queued: Callable[[], None] | None = None,
                 on_reaped: Callable[[], None] | None = None,
                 held_uploads: Callable[[], set[str]] | None = None):
        self.store = store
        self.cluster = store.cluster
        self.settings = settings
        self.shared = store.database.dialect == "postgresql"
        self.name = settings.name or default_name()
        # Unique to this start: a restarted daemon is a new member, and the runs its earlier
        # life held are reaped like any dead daemon's (but for the queued runs whose upload
        # it still holds: _adopt).
        self.daemon_id = f"{self.name}/{uuid.uuid4().hex[:12]}"
        self.listen = listen
        self.on_leading = on_leading
        self.on_rerun = on_rerun
        self.on_runs_queued = on_runs_queued
        self.on_reaped = on_reaped  # counted: basewatch_dead_daemon_runs_total
        # The uploaded contexts on this daemon's disk (its state_dir), which an earlier life
        # of it may have left for runs queued again as it stopped.
        self.held_uploads = held_uploads
        self._leading = not self.shared
        self._session: DaemonSession | None = None
        self._loop: asyncio.Task | None = None
        self.reaped = 0  # runs of dead daemons this one failed and queued again

    def is_leader(self) -> bool:
        return self._leading

    async def start(self) -> None:
        """Join the others (on PostgreSQL) and try for the lead once; then keep at it."""
        if not self.shared:
            return
        await self._connect()
        await self.cluster.join(self.daemon_id, self.name, self.listen)
        await self._adopt()  # before this daemon's first reaping fails them as stranded
        await self._tick()
        self._loop = asyncio.create_task(self._beat(), name="membership")

    async def _adopt(self) -> None:
        """Runs an earlier life of this daemon held for itself (its id is new at each start)
        and whose upload is still on this disk run here; those that needed secrets do not."""
        if self.held_uploads is None:
            return
        uploads = await asyncio.to_thread(self.held_uploads)
        if uploads:
            for run_id in await self.cluster.adopt(self.daemon_id, uploads):
                log.info("run %s, queued for an earlier start of this daemon, runs here: its "
                         "uploaded context is on this disk", run_id)

    async def _connect(self) -> None:
        self._session = await DaemonSession.open(self.store.database, self.daemon_id,
                                                 self._runs_queued)

    def _runs_queued(self) -> None:
        if self.on_runs_queued is not None:
            self.on_runs_queued()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next beat tries again; the lead is not kept blind
                log.warning("cluster heartbeat failed (%s: %s)", type(exc).__name__, exc,
                            exc_info=not isinstance(exc, StoreBusyError))
                self._set_leading(False)

    async def _tick(self) -> None:
        if self._session is None or self._session.closed:
            # The connection, and with it both locks, is gone: another daemon may lead now.
            self._set_leading(False)
            if self._session is not None:
                await self._session.close()
                self._session = None
            await self._connect()
            log.warning("cluster: reconnected to the database as %s", self.daemon_id)
        if not await self.cluster.heartbeat(self.daemon_id):
            log.error("cluster: this daemon (%s) was taken for dead by another (its lease "
                      "expired): its runs in progress were queued again elsewhere",
                      self.daemon_id)
            await self.cluster.join(self.daemon_id, self.name, self.listen)
        try:
            leading = await self._session.lead()
        except StoreBusyError:
            self._set_leading(False)
            raise
        self._set_leading(leading)
        await self._reap()

    async def _reap(self) -> None:
        lease = timedelta(seconds=self.settings.lease_seconds)
        dead = []
        for row in await self.cluster.daemons():
            if row.id == self.daemon_id:
                continue
            if self.cluster.expired(row, lease) or not await self._session.alive(row.id):
                dead.append(row)
        for row in dead:
            log.warning("cluster: daemon %s is gone (%s)", row.name,
                        "its lease expired" if self.cluster.expired(row, lease)
                        else "its connection to the database closed")
        for failed, rerun in await self.cluster.reap(dead):
            self.reaped += 1
            if self.on_reaped is not None:
                self.on_reaped()
            log.warning("run %s was interrupted when its daemon stopped: marked Failed%s",
                        failed, f", re-queued as {rerun}" if rerun else " (not run again)")
            if rerun is not None and self.on_rerun is not None:
                self.on_rerun(rerun)

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        log.warning("cluster: %s %s the watch", self.name, "leads" if leading
                    else "no longer leads")
        if self.on_leading is not None:
            self.on_leading(leading)

    async def view(self) -> dict:
        """For /healthz: this daemon, whether it leads, and the others it knows of."""
        if not self.shared:
            return {"daemon": self.daemon_id, "leader": True, "daemons": [self.name]}
        try:
            members = await self.cluster.daemons()
        except StoreBusyError:
            members = []
        return {"daemon": self.daemon_id, "leader": self._leading,
                "daemons": [row.name for row in members]}

    async def stop(self) -> None:
        """Leave: the row goes, and closing the connection releases the locks (another daemon
        leads from its next beat). Runs this daemon had were queued again as it stopped."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        if self._session is not None:
            try:
                await self.cluster.leave(self.daemon_id)
            except StoreBusyError as exc:
                log.warning("cluster: cannot remove this daemon's row (%s); the others see its "
                            "lock free and remove it", exc)
            await self._session.close()
            self._session = None
        self._leading = not self.shared
