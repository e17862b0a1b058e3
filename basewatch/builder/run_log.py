"""A run's log file, appended to as the build happens (from the engine's worker thread)."""
from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from basewatch.errors import RunLogError


# The default of `max_log_bytes`: far more than a build prints, far less than a disk holds.
DEFAULT_MAX_LOG_BYTES = 16 * 1024 * 1024


def log_path(logs_dir: Path, run_id: str) -> Path:
    return logs_dir / f"{run_id}.log"


class RunLog:
    """At most `max_bytes` of a run's output; past that, output is counted, not kept, and the
    log ends with one line saying how much was cut. A write the disk refuses raises
    RunLogError once; the log takes nothing more after it. `copy`, when given, gets every
    piece the file got, in order (run_log_copy.py: the database's copy)."""

    def __init__(self, path: Path, on_write: Callable[[], None] | None = None,
                 max_bytes: int = DEFAULT_MAX_LOG_BYTES,
                 copy: Callable[[bytes], None] | None = None):
        self.path = path
        self._copy = copy
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "ab")
        except OSError as error:
            raise RunLogError(f"could not open the run's log {path.name}: "
                              f"{error.strerror or error}") from None
        self._lock = threading.Lock()
        self._on_write = on_write
        self._room = max_bytes - self._file.tell()
        self._max_bytes = max_bytes
        self._dropped = 0  # bytes past the cap
        self._at_line_start = self._file.tell() == 0
        self._broken = False

    def write(self, text: str) -> None:
        with self._lock:
            if self._file.closed or self._broken:
                return
            data = text.encode("utf-8", "replace")
            if self._dropped or len(data) > self._room:
                # Keep whole lines up to the cap; once cut, keep nothing more.
                kept = data[:data.rfind(b"\n", 0, max(self._room, 0)) + 1] \
                    if not self._dropped else b""
                self._dropped += len(data) - len(kept)
                data = kept
            if not data:
                return
            self._write(data)
            self._room -= len(data)
        if self._on_write is not None:
            self._on_write()

    def _write(self, data: bytes) -> None:
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as error:
            self._broken = True
            raise RunLogError(f"could not write the run's log: {error.strerror or error}") \
                from None
        self._at_line_start = data.endswith(b"\n")
        if self._copy is not None:
            self._copy(data)

    def line(self, text: str) -> None:
        """A line of basewatch's own, stamped so it stands out from the engine's output."""
        self.write(f"{_stamp()} {text}\n")

    def close(self) -> None:
        """Close the file, after the line saying it was cut, if it was."""
        with self._lock:
            if self._file.closed:
                return
            try:
                if self._dropped and not self._broken:
                    self._write(("" if self._at_line_start else "\n").encode() + (
                        f"{_stamp()} The log was cut at {self._max_bytes:,} bytes "
                        f"(max_log_bytes): {self._dropped:,} more bytes of output were not "
                        "kept\n").encode())
            except RunLogError:
                pass  # reported by the write that failed first, if there was one
            finally:
                with contextlib.suppress(OSError):  # nothing is left unflushed to lose
                    self._file.close()
        if self._dropped and self._on_write is not None:
            self._on_write()


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y/%m/%d %H:%M:%S")


class LogUpdates:
    """Wakes whoever follows a run's log when the log grows or the run ends: following a
    build costs no polling, and its last line reaches the terminal at once."""

    def __init__(self):
        self._followers: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def follow(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set on every change to the run's log (the follower clears it)."""
        self._loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self._followers.setdefault(run_id, set()).add(event)
        try:
            yield event
        finally:
            followers = self._followers[run_id]
            followers.discard(event)
            if not followers:
                del self._followers[run_id]

    def changed(self, run_id: str) -> None:
        """The run's log grew or the run ended; callable from any thread."""
        if self._loop is not None and run_id in self._followers:
            self._loop.call_soon_threadsafe(self._wake, run_id)

    def _wake(self, run_id: str) -> None:
        for event in self._followers.get(run_id, ()):
            event.set()
