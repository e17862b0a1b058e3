"""The CLI's progress while it packs and uploads a context: a bar on a terminal, redrawn at a
bounded rate, one summary line at the end, and nothing at all anywhere else."""
from __future__ import annotations

import io
import os
import re
import sys

import pytest
import tqdm.std

from basewatch.builder.contexts.archive import pack_local_context
from basewatch.cli_progress import REDRAWS_PER_SECOND, ContextProgress

MIB = 1024 * 1024


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """One clock for the bar (tqdm reads `tqdm.std.time`) and for the summary."""
    fake = FakeClock()
    monkeypatch.setattr(tqdm.std, "time", fake)
    return fake


def redraws(text: str) -> list[str]:
    """What each redraw left on the line (tqdm starts each with a carriage return)."""
    return [part for part in text.split("\r") if part.strip()]


def test_a_terminal_sees_a_bar_with_bytes_rate_and_one_summary_line(clock):
    terminal = FakeTerminal()
    progress = ContextProgress(shown=True, stream=terminal, clock=clock)
    for done in range(0, 81 * MIB, MIB):
        clock.now += 0.04
        progress.packed(min(done, 80 * MIB), 80 * MIB)
    body = progress.upload(io.BytesIO(b"x" * (2 * MIB)), 2 * MIB)
    while body.read(64 * 1024):
        clock.now += 0.01
    progress.finish()

    drawn = redraws(terminal.getvalue())
    bars = [line for line in drawn if line.startswith(("Packing:", "Uploading:"))]
    assert any(re.search(r"Packing: +\d+%\|.*\| [\d.]+MiB/80\.0MiB \[[\d.]+MiB/s\]", line)
               for line in bars), bars
    assert any(line.startswith("Uploading:") and "2.00MiB" in line for line in bars), bars
    # The bar is wiped, and the summary is the one line left.
    assert terminal.getvalue().endswith("\rUploaded 80.0 MiB (2.0 MiB packed) in 3.5 s\n")
    assert terminal.getvalue().count("\n") == 1


def test_redraws_are_bounded_however_often_progress_comes(clock):
    terminal = FakeTerminal()
    progress = ContextProgress(shown=True, stream=terminal, clock=clock)
    steps, seconds = 20_000, 4.0
    for step in range(steps + 1):
        clock.now += seconds / steps
        progress.packed(step * 4096, steps * 4096)
    progress.finish()
    bars = [line for line in redraws(terminal.getvalue()) if line.startswith("Packing")]
    assert 2 <= len(bars) <= seconds * REDRAWS_PER_SECOND + 2, len(bars)


@pytest.mark.parametrize("machine_output", [False, True])
def test_nothing_when_stderr_is_not_a_terminal_or_the_output_is_for_a_program(
        monkeypatch, machine_output):
    stderr = io.StringIO() if not machine_output else FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    progress = ContextProgress.for_terminal(machine_output)
    progress.packed(MIB, 2 * MIB)
    body = progress.upload(io.BytesIO(b"x" * 1000), 1000)
    assert body.read() == b"x" * 1000
    progress.finish()
    assert not progress.shown
    assert stderr.getvalue() == ""


def test_a_failure_leaves_no_bar_and_no_summary(clock):
    terminal = FakeTerminal()
    progress = ContextProgress(shown=True, stream=terminal, clock=clock)
    progress.packed(MIB, 8 * MIB)
    progress.abandon()
    assert "Uploaded" not in terminal.getvalue()
    assert terminal.getvalue().rstrip(" ").endswith("\r")  # the line is blank again


@pytest.mark.parametrize("error", [OSError("connection refused"), KeyboardInterrupt()])
def test_as_a_context_manager_a_block_that_raises_abandons_and_the_error_goes_on(clock, error):
    terminal = FakeTerminal()
    with pytest.raises(type(error)):
        with ContextProgress(shown=True, stream=terminal, clock=clock) as progress:
            progress.packed(MIB, 8 * MIB)
            raise error
    assert "Uploaded" not in terminal.getvalue()
    assert terminal.getvalue().rstrip(" ").endswith("\r")


def test_as_a_context_manager_a_block_that_ends_finishes_with_the_summary(clock):
    terminal = FakeTerminal()
    with ContextProgress(shown=True, stream=terminal, clock=clock) as progress:
        progress.packed(2 * MIB, 2 * MIB)
        clock.now += 1.5
    assert terminal.getvalue().endswith("\rUploaded 2.0 MiB in 1.5 s\n")


def test_packing_reports_uncompressed_bytes_as_it_reads_even_within_one_file(tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    (context / "big.bin").write_bytes(os.urandom(3 * MIB))
    (context / "sub").mkdir()
    (context / "sub" / "small.txt").write_text("hello\n")
    reports: list[tuple[int, int]] = []
    archive = pack_local_context(context, limit=1 << 30,
                                 progress=lambda done, total: reports.append((done, total)))
    archive.unlink()
    totals = {total for _, total in reports}
    assert len(totals) == 1
    total = totals.pop()
    done = [d for d, _ in reports]
    assert done == sorted(done) and done[-1] == total
    assert total >= 3 * MIB
    # The large file moves the count while it is read, not only once it is in.
    assert sum(1 for d in done if 0 < d < 3 * MIB) >= 10
