"""A run's log file, appended to as the build happens (from the engine's worker thread)."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path


def log_path(logs_dir: Path, run_id: str) -> Path:
    return logs_dir / f"{run_id}.log"


class RunLog:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.write(text)
                self._file.flush()

    def line(self, text: str) -> None:
        """A line of basewatch's own, stamped so it stands out from the engine's output."""
        stamp = datetime.now(timezone.utc).strftime("%Y/%m/%d %H:%M:%S")
        self.write(f"{stamp} {text}\n")

    def close(self) -> None:
        with self._lock:
            self._file.close()
