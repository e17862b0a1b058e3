"""A task file's secrets kept out of its run's log: every value replaced by `*****`, in the
backend's own lines and in what the engine and the containers print."""
from __future__ import annotations

import threading

from basewatch.builder.backend import RunLogSink

MASK = "*****"
# A line longer than this is written (masked) without waiting for its end: a container that
# prints without newlines must not grow a buffer without bound.
MAX_PENDING = 64 * 1024


class Secrets:
    def __init__(self, values: tuple[str, ...] | list[str]):
        # Longest first: a secret that contains another is masked whole.
        self.values = sorted({v for v in values if v}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, MASK)
        return text


class MaskedLog:
    """The run's log with the secrets masked. Lines of basewatch's own go through whole;
    streamed output is cut into lines first, so a secret split across two chunks is still
    found, and each line is written under `prefix` (the step's id) so parallel steps' output
    stays readable."""

    def __init__(self, sink: RunLogSink, secrets: Secrets, prefix: str = ""):
        self.sink = sink
        self.secrets = secrets
        self.prefix = prefix
        self._pending = ""
        self._lock = threading.Lock()  # the engine's threads write here

    def line(self, text: str) -> None:
        self.sink.line(self.prefix + self.secrets.mask(text))

    def write(self, text: str) -> None:
        with self._lock:
            text = (self._pending + text).replace("\r\n", "\n")
            lines = text.split("\n")
            self._pending = lines.pop()
            if len(self._pending) > MAX_PENDING:
                lines.append(self._pending)
                self._pending = ""
            if lines:
                self.sink.write("".join(f"{self.prefix}{self.secrets.mask(line)}\n"
                                        for line in lines))

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, ""
        if pending:
            self.sink.write(f"{self.prefix}{self.secrets.mask(pending)}\n")

    def step(self, step_id: str) -> "MaskedLog":
        """The same log, for one step's streamed output."""
        return MaskedLog(self.sink, self.secrets, f"{step_id} | ")
