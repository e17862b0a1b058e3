"""The tutorials in docs/tutorials/ as a test runs them: their marked blocks, in order, in one
shell session, as a reader types them into one terminal.

A tutorial marks what a test does with HTML comments, which Markdown does not show:

    <!-- test: run -->            the fenced block after it is typed into the session;
                                  every command in it must succeed
    <!-- test: write PATH -->     the fenced block after it is saved as PATH (the reader's
                                  editor), relative to the session's current folder
    <!-- test: expect REGEX -->   the output of the last `run` block matches REGEX (re.search)
    <!-- test: until COMMAND -->  COMMAND is run in the session until it succeeds: the test's
                                  stand-in for a reader who waits and looks again
    <!-- test: skip REASON -->    the block after it is not run (it waits for Ctrl-C, say)

Fixed ports in the text (the registry's 127.0.0.1:5000, the daemon's 127.0.0.1:8080) are
swapped for free ones before anything runs, so tutorials run beside other tests.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
TUTORIALS = REPO / "docs" / "tutorials"
# The tutorials written with test markers, each run by tests/e2e/test_tutorials.py.
RUNNABLE = ("quick-build.md", "base-image-trigger.md", "registry-notifications.md")
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
_MARKER = re.compile(r"^<!--\s*test:\s*(?P<kind>\w+)\s*(?P<arg>.*?)\s*-->\s*$")
_FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
_DONE = "__TUTORIAL_BLOCK_DONE__"


@dataclass
class Block:
    language: str
    text: str
    line: int  # where the fence opens, for messages


@dataclass
class Step:
    kind: str  # run, write, until
    line: int
    text: str = ""  # the commands, or the file's content
    argument: str = ""  # write's path, until's command
    expect: list[str] = field(default_factory=list)


@dataclass
class Tutorial:
    path: Path
    blocks: list[Block]  # every fenced block
    steps: list[Step]
    unmarked: list[Block]  # shell blocks with no marker: neither run nor skipped on purpose


def parse(path: Path) -> Tutorial:
    lines = path.read_text().splitlines()
    blocks, steps, unmarked = [], [], []
    pending = None  # the marker waiting for its block: (kind, argument, line)
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = _MARKER.match(line.strip())
        fence = _FENCE.match(line)
        if marker:
            kind, argument = marker["kind"], marker["arg"]
            if kind == "expect":
                runs = [step for step in steps if step.kind == "run"]
                if not runs:
                    raise ValueError(f"{path.name}:{index + 1}: expect before any run block")
                re.compile(argument)
                runs[-1].expect.append(argument)
            elif kind == "until":
                steps.append(Step("until", index + 1, argument=argument))
            elif kind in ("run", "write", "skip"):
                pending = (kind, argument, index + 1)
            else:
                raise ValueError(f"{path.name}:{index + 1}: unknown marker {kind!r}")
        elif fence:
            closing = fence["fence"]
            body = []
            index += 1
            while index < len(lines) and not lines[index].startswith(closing):
                body.append(lines[index])
                index += 1
            block = Block(fence["lang"], "\n".join(body) + "\n", index - len(body))
            blocks.append(block)
            if pending and pending[0] in ("run", "write"):
                kind, argument, at = pending
                steps.append(Step(kind, at, text=block.text, argument=argument))
            elif pending is None and block.language in SHELL_LANGUAGES:
                unmarked.append(block)
            pending = None
        elif line.strip() and pending is not None:
            raise ValueError(f"{path.name}:{pending[2]}: a `{pending[0]}` marker must be "
                             "followed by its fenced block")
        index += 1
    return Tutorial(path, blocks, steps, unmarked)


class Session:
    """One bash process the steps are typed into, so `cd`, `export` and `&` carry over from one
    block to the next as in a terminal. Each block's output goes to a file of its own."""

    def __init__(self, cwd: Path, env: dict[str, str], scratch: Path):
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self.count = 0
        # Its own process group: the daemons and registries a tutorial starts with `&` are in
        # it too, so closing the session stops them all, also when a step failed.
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # A command that fails anywhere in a block says so (as `set -e` would, without ending
        # the session); commands tested by `if`, `until`, `||` are left alone, as by `set -e`.
        self._send("set -E -o pipefail; trap 'echo \"__TUTORIAL_FAILED__ $BASH_COMMAND\"' ERR")

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)

    def _send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def run(self, script: str, timeout: float) -> tuple[int, str]:
        """Type `script` in; its exit status and output (stdout and stderr)."""
        self.count += 1
        source = self.scratch / f"block{self.count}.sh"
        output = self.scratch / f"block{self.count}.out"
        source.write_text(script)
        self._send(f"source {source} > {output} 2>&1 < /dev/null; echo \"{_DONE} $?\"")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                text = output.read_text() if output.exists() else ""
                raise AssertionError(f"the block did not end within {timeout:.0f}s (or the "
                                     f"shell exited); its output so far:\n{text[-3000:]}")
            try:
                line = self._lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line.startswith(_DONE):
                return int(line.split()[1]), output.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process.stdin.close()
        self._reader.join(timeout=10)  # it ends at the end of the shell's output
        self.process.stdout.close()


def substitute(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def perform(tutorial: Tutorial, session: Session, replacements: dict[str, str],
            block_timeout: float = 120, until_timeout: float = 60) -> list[tuple[Step, str]]:
    """Every step in order; raises AssertionError naming the tutorial's line on the first
    that does not do what the tutorial says. Returns each run step with its output."""
    done = []
    for step in tutorial.steps:
        where = f"{tutorial.path.name}:{step.line}"
        if step.kind == "write":
            path = substitute(step.argument, replacements)
            body = substitute(step.text, replacements)
            script = (f"mkdir -p \"$(dirname '{path}')\"\ncat > '{path}' <<'__TUTORIAL_EOF__'\n"
                      f"{body}__TUTORIAL_EOF__\n")
            status, output = session.run(script, block_timeout)
            assert status == 0, f"{where}: writing {path} failed: {output}"
        elif step.kind == "until":
            command = substitute(step.argument, replacements)
            last = [""]

            def succeeds() -> bool:
                status, last[0] = session.run(command, block_timeout)
                return status == 0

            try:
                wait_until(succeeds, until_timeout, f"`{command}` to succeed", interval=0.5)
            except AssertionError as exc:
                raise AssertionError(f"{where}: {exc}; its last output:\n{last[0][-3000:]}") \
                    from None
        else:
            script = substitute(step.text, replacements)
            status, output = session.run(script, block_timeout)
            failed = [line for line in output.splitlines()
                      if line.startswith("__TUTORIAL_FAILED__")]
            assert status == 0 and not failed, (
                f"{where}: the block failed ({failed[0] if failed else f'exit {status}'}):\n"
                f"{script}\n--- output ---\n{output[-4000:]}")
            for pattern in step.expect:
                # A pattern may name a port as written (127.0.0.1:5000) or escaped.
                pattern = substitute(substitute(pattern, {re.escape(old): re.escape(new) for
                                                          old, new in replacements.items()}),
                                     replacements)
                assert re.search(pattern, output, re.MULTILINE), (
                    f"{where}: the output does not show what the tutorial says "
                    f"(/{pattern}/):\n{script}\n--- output ---\n{output[-4000:]}")
            done.append((step, output))
    return done
