"""What the CLI shows while it packs and uploads a context: bytes done of the total, the rate and
a bar, on stderr when it is a terminal, redrawn in place at most `REDRAWS_PER_SECOND` times a
second and replaced at the end by one summary line. Silent otherwise: pipes, logs and machine
output (`-o json`, `--query`) get nothing of it."""
from __future__ import annotations

import shutil
import sys
import time
from typing import BinaryIO, Callable, TextIO

from basewatch.builder.contexts.archive import human_size

REDRAWS_PER_SECOND = 10


class ContextProgress:
    """Two phases of one context, packing then uploading, each a bar (tqdm) while it lasts.

    As a context manager, around the packing and the upload: `finish` when the block ends,
    `abandon` when it raises (Ctrl-C included), so no bar is left half drawn over the error."""

    def __init__(self, shown: bool, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.shown = shown
        self._clock = clock
        self._bar = None
        self._started: float | None = None
        self.packed_bytes = 0  # the context as an uncompressed tar
        self.sent_bytes = 0

    @classmethod
    def for_terminal(cls, machine_output: bool = False) -> "ContextProgress":
        """Shown on an interactive stderr, unless the command's output is for a program."""
        return cls(shown=not machine_output and _is_terminal(sys.stderr))

    def packed(self, done: int, total: int) -> None:
        """Packing has reached `done` of `total` bytes (pack_local_context's `progress`)."""
        if self._started is None:
            self._started = self._clock()
        self.packed_bytes = max(self.packed_bytes, done)
        self._advance("Packing", done, total)

    def upload(self, body: BinaryIO, total: int) -> BinaryIO:
        """`body`, reporting as it is read (by the HTTP client, as it sends)."""
        if self._started is None:
            self._started = self._clock()
        return _Reading(body, lambda done: self._sent(done, total))

    def _sent(self, done: int, total: int) -> None:
        self.sent_bytes = done
        self._advance("Uploading", done, total)

    def _advance(self, phase: str, done: int, total: int) -> None:
        if not self.shown:
            return
        if self._bar is None or self._bar.desc != phase:
            self._close_bar()
            self._bar = _bar(phase, total, self.stream)
        self._bar.update(min(done, total) - self._bar.n)

    def finish(self) -> None:
        """The daemon has the context: the bar gives way to one line saying what was sent."""
        self._close_bar()
        if self.shown and self._started is not None:
            seconds = self._clock() - self._started
            packed = f" ({human_size(self.sent_bytes)} packed)" \
                if self.sent_bytes and self.sent_bytes != self.packed_bytes else ""
            print(f"Uploaded {human_size(self.packed_bytes or self.sent_bytes)}{packed} "
                  f"in {seconds:.1f} s", file=self.stream, flush=True)

    def abandon(self) -> None:
        """Packing or the upload failed: the bar goes, the error says the rest."""
        self._close_bar()

    def __enter__(self) -> "ContextProgress":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abandon()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _bar(phase: str, total: int, stream: TextIO):
    from tqdm import tqdm

    # No monitor thread: the bar is redrawn by updates, which come every few KiB.
    tqdm.monitor_interval = 0
    # tqdm draws nothing on a terminal that reports no size (a pty nobody sized); shutil
    # falls back to 80x24 there.
    size = shutil.get_terminal_size()
    return tqdm(total=total, desc=phase, file=stream, unit="iB", unit_scale=True,
                unit_divisor=1024, mininterval=1 / REDRAWS_PER_SECOND, leave=False,
                ncols=size.columns, nrows=size.lines, disable=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}{unit}/{total_fmt}{unit} "
                           "[{rate_fmt}]")


class _Reading:
    """A readable body that tells `report` how many bytes have been read from it so far."""

    def __init__(self, inner: BinaryIO, report: Callable[[int], None]):
        self._inner, self._report, self._done = inner, report, 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._done += len(data)
        self._report(self._done)
        return data
