"""Progress on long work, through the real CLI against a running daemon, the real engine and
registry: a context's upload on a terminal (a pseudo-terminal here), and nowhere else."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.e2e.test_graph import cli
from tests.e2e.test_cli_output import cli_env
from tests.e2e.test_task_commands import daemon  # noqa: F401  (a fixture)

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


def big_context(tmp_path, reg: str, name: str = "big"):
    """A context of a few MiB that a build copies into one layer."""
    context = tmp_path / name
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {reg}/base:1\nCOPY blob.bin /blob.bin\n")
    (context / "blob.bin").write_bytes(os.urandom(6 * MIB))
    return context


def on_terminal(*args: str, url: str, timeout: float = 120) -> tuple[int, str]:
    """The CLI with stdin, stdout and stderr on a pseudo-terminal (80x24), as a person runs
    it: its exit code and everything the terminal got."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "basewatch", *args], env=cli_env(url),
                               stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the process closed its end
                break
            if not data:
                break
            output += data
        return process.wait(timeout=max(1.0, deadline - time.monotonic())), \
            output.decode(errors="replace")
    finally:
        process.kill()
        os.close(leader)


def test_a_build_on_a_terminal_shows_the_upload_then_one_summary_line(tmp_path, daemon):  # noqa: F811
    url, reg, _, _ = daemon
    context = big_context(tmp_path, reg)
    code, screen = on_terminal("build", "--no-push", str(context), url=url)
    assert code == 0, screen
    # A bar redrawn in place (carriage returns, no new lines) with the bytes of the total.
    assert re.search(r"\rPacking: +\d+%\|.*\| [\d.]+\w?iB/6\.0\dMiB \[", screen), screen
    assert "\rUploading:" in screen, screen
    summary = re.search(r"\rUploaded (6\.0 MiB) \(6\.0 MiB packed\) in \d+\.\d s\r\n", screen)
    assert summary, screen
    # The bar is gone before the summary: nothing of it is left on a line of its own.
    lines = [line.rsplit("\r", 1)[-1] for line in screen.split("\r\n")]
    assert not [line for line in lines if line.startswith(("Packing", "Uploading"))], lines
    assert screen.index("Uploaded") < screen.index("Queued a run with ID:")
    assert re.search(r"Run ID: \S+ was successful after", screen)


def test_a_piped_build_shows_no_progress_and_json_parses(tmp_path, daemon):  # noqa: F811
    url, reg, _, _ = daemon
    context = big_context(tmp_path, reg)
    piped = subprocess.run([sys.executable, "-m", "basewatch", "build", "--no-push",
                            str(context)], env=cli_env(url), capture_output=True, text=True,
                           timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
    assert "\r" not in piped.stdout and "Uploaded" not in piped.stdout
    assert piped.stdout.startswith("Queued a run with ID: ")

    as_json = cli("build", "--no-push", "-o", "json", str(context), url=url)
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.stderr == ""
    run = json.loads(as_json.stdout)
    assert run["status"] == "Succeeded" and run["type"] == "QuickBuild", run

    # On a terminal too, machine output has no bar: stdout is for the program, and so is the
    # terminal's stderr, which a person did not ask to see.
    code, screen = on_terminal("build", "--no-push", "--query", "status", "-o", "tsv",
                               str(context), url=url)
    assert (code, screen) == (0, "Succeeded\r\n"), screen
    code, screen = on_terminal("build", "--no-push", "-o", "none", str(context), url=url)
    assert (code, screen) == (0, ""), screen


def test_a_runs_log_tells_a_push_compactly(tmp_path, daemon):  # noqa: F811
    url, reg, _, _ = daemon
    context = big_context(tmp_path, reg)
    built = cli("build", "-t", f"{reg}/big:1", str(context), "--no-logs", url=url)
    assert built.returncode == 0, built.stderr
    run_id = re.match(r"Queued a run with ID: (\S+)\n", built.stdout).group(1)
    log = cli("task", "logs", "--run-id", run_id, url=url)
    assert log.returncode == 0, log.stderr
    text = log.stdout
    start = text.index("The push refers to repository")
    push = text[start:text.index("Pushed ", start)].splitlines()
    # The 6 MiB layer: one line as it starts, one as it ends; the base's three were mounted
    # from its repository; then the digest and one line for the whole push.
    layer = re.search(r"^(?:\S+ \S+ )?([0-9a-f]{12}): pushing 6\.0 MiB$", text, re.M)
    assert layer, push
    assert len([line for line in push if layer.group(1) in line]) == 2, push
    assert re.search(rf"^(\S+ \S+ )?{layer.group(1)}: Pushed$", text, re.M), push
    assert re.search(r"^(\S+ \S+ )?pushed 1 layer, 6\.0 MiB in \d+\.\d s; 3 layers already "
                     r"there$", text, re.M), push
    assert not [line for line in push if "Preparing" in line or "Waiting" in line
                or "[=" in line], push
    assert len(push) <= 9, push


def test_a_quick_run_on_a_terminal_shows_its_upload_too(tmp_path, daemon):  # noqa: F811
    url, reg, _, _ = daemon
    context = big_context(tmp_path, reg)
    code, screen = on_terminal("run", "--cmd", f"{reg}/base:1 ls -l /workspace/blob.bin",
                               str(context), url=url)
    assert code == 0, screen
    assert "\rPacking:" in screen and "\rUploading:" in screen, screen
    assert re.search(r"\rUploaded 6\.0 MiB \(6\.0 MiB packed\) in \d+\.\d s\r\n", screen)
    assert "6291456" in screen, "the step saw the uploaded file"
