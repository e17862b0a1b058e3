"""Where a run's log is read from: this daemon's log file when it has one (it ran the run),
else, with a database several daemons share, the copy there (run_log_copy.py), so every daemon
shows every run's log, also while another daemon is still running it."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from basewatch.builder.run_log import log_path
from basewatch.builder.run_log_copy import FLUSH_SECONDS
from basewatch.store import RunLogStore

# The most one read returns: a long log is sent in pieces, never held whole.
MAX_READ_BYTES = 1024 * 1024
# How often a follower looks again at a log nothing wakes it for: a run in progress on another
# daemon (its copy grows every FLUSH_SECONDS), a queued run canceled, the daemon stopping.
LOCAL_RECHECK_SECONDS = 1.0
SHARED_RECHECK_SECONDS = FLUSH_SECONDS


@dataclass(frozen=True)
class LogSource:
    """One run's log for a reader: its bytes from an offset, whether the run still goes on, and
    how often to look again while following it."""
    read: Callable[[int], Awaitable[bytes]]
    running: Callable[[], Awaitable[bool]]
    recheck_seconds: float


class RunLogReader:
    def __init__(self, logs_dir: Path, run_logs: RunLogStore | None = None):
        self.logs_dir = logs_dir
        self.run_logs = run_logs  # None: the files are all there is (SQLite, one daemon)

    def source(self, run_id: str, running: Callable[[], Awaitable[bool]]) -> LogSource:
        return LogSource(lambda offset: self.read(run_id, offset), running,
                         SHARED_RECHECK_SECONDS if self.run_logs else LOCAL_RECHECK_SECONDS)

    async def read(self, run_id: str, offset: int, limit: int = MAX_READ_BYTES) -> bytes:
        """The log's bytes from `offset` on (at most about `limit`); b"" when there are none
        yet (a queued run)."""
        found = await asyncio.to_thread(_read_file, log_path(self.logs_dir, run_id), offset,
                                        limit)
        if found is None:
            if self.run_logs is None:
                return b""
            return await self.run_logs.read(run_id, offset, limit)
        return found

    async def copy_from_database(self, run_id: str) -> bytes | None:
        """The whole log from the database, for a run this daemon has no file of (another
        daemon ran it); None when this daemon has the file, or the database has no log."""
        if self.run_logs is None or await asyncio.to_thread(
                log_path(self.logs_dir, run_id).exists):
            return None
        whole = bytearray()
        while piece := await self.run_logs.read(run_id, len(whole)):
            whole += piece
        return bytes(whole) if whole else None


def _read_file(path: Path, offset: int, limit: int) -> bytes | None:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read(limit)
    except FileNotFoundError:
        return None
