"""A run's log file, appended to as the build happens (from the engine's worker thread)."""
from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator


def log_path(logs_dir: Path, run_id: str) -> Path:
    return logs_dir / f"{run_id}.log"


class RunLog:
    def __init__(self, path: Path, on_write: Callable[[], None] | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._on_write = on_write

    def write(self, text: str) -> None:
        with self._lock:
            if self._file.closed:
                return
            self._file.write(text)
            self._file.flush()
        if self._on_write is not None:
            self._on_write()

    def line(self, text: str) -> None:
        """A line of basewatch's own, stamped so it stands out from the engine's output."""
        stamp = datetime.now(timezone.utc).strftime("%Y/%m/%d %H:%M:%S")
        self.write(f"{stamp} {text}\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()


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
