"""How far the config's tasks are registered as the daemon starts: plain state with no
imports of weight, so /healthz can report it before the daemon's modules are even loaded."""
from __future__ import annotations

import time
from typing import Iterable


class RegistrationProgress:
    """How far the config's tasks are registered: read live by /healthz, and by the API,
    which answers 503 for a config task that the start's registration has not reached yet."""

    def __init__(self) -> None:
        self.state = "in_progress"  # until the start's sync is done; again while one runs
        self.started = False  # the start's sync is done and the watch started: ready
        self.listed = False  # the config's tasks are known (the file read)
        self.total = self.registered = self.failed = 0
        self.waiting: set[str] = set()  # config tasks this sync has not reached yet
        self._began = time.monotonic()

    def begin(self, names: Iterable[str]) -> None:
        self.listed = True
        self.waiting = set(names)
        self.state, self.total, self.registered, self.failed = \
            "in_progress", len(self.waiting), 0, 0
        self._began = time.monotonic()

    def reached(self, registered: Iterable[str], failed: Iterable[str]) -> None:
        for count, names in (("registered", registered), ("failed", failed)):
            names = list(names)
            self.waiting.difference_update(names)
            setattr(self, count, getattr(self, count) + len(names))

    def finish(self) -> float:
        """Seconds the sync took."""
        self.state, self.waiting = "done", set()
        return time.monotonic() - self._began

    def ready(self) -> None:
        """The daemon has started: its config's tasks registered and the watch on."""
        self.started = True

    def not_reached(self, name: str) -> bool:
        """The start's registration has not reached a task of this name yet (while the
        file is still being read, any name might be one of its tasks)."""
        return not self.started and (not self.listed or name in self.waiting)

    def view(self) -> dict:
        return {"state": self.state, "registered": self.registered, "total": self.total,
                "failed": self.failed}
