"""The README's quickstart ("Your own config, step by step"), command by command, as a newcomer
follows it: every ```sh block after a `<!-- quickstart` marker, in order, in one bash, in a fresh
`git clone` of this checkout's HEAD (commit first: what is not committed is not cloned).

The one step it does not take is `make setup`, which the README asks for first (it installs apt
packages and the virtualenv from the network): the clone's `.venv` is this suite's own, and
PYTHONPATH makes that venv import the clone's basewatch rather than the checkout it was
installed from. Nothing else is given: no DOCKER_HOST, no BASEWATCH_* variables.
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^<!-- quickstart[^\n]*-->\n```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
PORTS = (5000, 8080)  # the registry's and the daemon's, as config/quickstart.yml names them
DONE = "@@quickstart-block-done"


def quickstart_blocks() -> list[str]:
    return BLOCK.findall((REPO / "README.md").read_text())


def test_the_readme_has_a_quickstart_from_the_stack_to_the_clean_up():
    text = "\n".join(quickstart_blocks())
    steps = ["bin/activate", "scripts/stack.py up --notify", "docker push", "basewatch serve",
             "basewatch task run", "basewatch task list-runs", "scripts/stack.py down",
             "make clean"]
    where = [text.find(step) for step in steps]
    assert -1 not in where, dict(zip(steps, where))
    assert where == sorted(where), "the steps in this order"


class Shell:
    """One bash that runs blocks one after the other, as a person types them: what one block
    sets (exports, a background job) is there for the next."""

    def __init__(self, cwd: Path, env: dict[str, str], blocks_dir: Path):
        self.blocks_dir = blocks_dir
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.transcript: list[str] = []
        # Its own session: the test can signal it, and every job it started, as one group.
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self._send("set -e\n")  # the first failing command ends the shell, and the test

    def _read(self) -> None:
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.put(line)
        self.lines.put(None)

    def _send(self, text: str) -> None:
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def run(self, script: str, timeout: float, name: str) -> str:
        """Run `script` (sourced: its exports and jobs stay); its output, once it has ended."""
        path = self.blocks_dir / f"{len(list(self.blocks_dir.iterdir())):02d}.sh"
        path.write_text(script)
        self.transcript.append(f"$ # {name}\n{script}")
        self._send(f". {path}\necho {DONE}\n")
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{name} did not end within {timeout:.0f}s:\n"
                                     + self.log(output)) from None
            if line is None:
                self.process.wait(timeout=10)
                raise AssertionError(f"{name} failed (the shell exited with code "
                                     f"{self.process.returncode}):\n" + self.log(output))
            if line.rstrip("\n") == DONE:
                self.transcript.append("".join(output))
                return "".join(output)
            output.append(line)

    def log(self, output: list[str]) -> str:
        return "".join(self.transcript[-6:]) + "".join(output)

    def close(self) -> None:
        if not self.process.stdin.closed:
            self.process.stdin.close()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.reader.join(timeout=10)  # the output's end: once every job has let go of it too

    def kill(self) -> None:
        """After a failure: the shell and the jobs it started (the daemon)."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.close()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_under(folder: Path) -> list[str]:
    """Processes running in `folder` or naming it on their command line (dockerd, the registry,
    the daemon), zombies left out: they have exited."""
    found = []
    prefix = str(folder)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if state != "Z" and (prefix in command or cwd == prefix or cwd.startswith(prefix + "/")):
            found.append(f"{entry.name}: {command.strip()} (in {cwd})")
    return found


def mounts_under(folder: Path) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(str(folder))]


@pytest.fixture
def clone():
    """A fresh clone of HEAD, its .venv this suite's; afterwards whatever a failed quickstart
    left running is stopped. In a short folder of its own, not tmp_path: the engine's sockets
    go under .stack/, and containerd cannot bind a socket path over 104 characters."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").exists():
        pytest.skip("the suite does not run in a virtualenv: the README's .venv has nothing "
                    "to stand for it")
    # The README's ports are fixed: a demo of another checkout may hold them for a while.
    wait_until(lambda: not [port for port in PORTS if port_open(port)], timeout=90,
               what=f"127.0.0.1 ports {PORTS}, which the quickstart's registry and daemon need, "
                    "to be free (a `make demo` or another quickstart still running?)",
               interval=1)
    top = Path(tempfile.mkdtemp(prefix="bwqs-"))
    folder = top / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(folder)], check=True)
    (folder / ".venv").symlink_to(venv)
    yield folder
    if (folder / ".stack" / "state.json").exists():
        subprocess.run([sys.executable, "scripts/stack.py", "down"], cwd=folder)
    for point in sorted(mounts_under(folder), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(top, ignore_errors=True)


def test_the_readme_quickstart_runs_as_written_in_a_fresh_clone(clone: Path, tmp_path: Path):
    blocks = quickstart_blocks()
    env = {name: value for name, value in os.environ.items()
           if name != "DOCKER_HOST" and not name.startswith(("BASEWATCH_", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(clone)  # the venv's editable basewatch is another checkout
    (tmp_path / "blocks").mkdir()
    shell = Shell(clone, env, tmp_path / "blocks")
    timings: list[str] = []
    started = time.monotonic()
    try:
        for number, block in enumerate(blocks, 1):
            step = time.monotonic()
            output = shell.run(block, timeout=120, name=f"README quickstart block {number}")
            timings.append(f"{number}: {time.monotonic() - step:.1f}s")
            if "basewatch task run hello" in block:
                assert re.search(r"Run ID: ca1 was successful", output), shell.log([])
            if "docker build --build-arg PATCH=1" in block:
                cascade = wait_until(lambda: rebuilt_on_patch(shell), timeout=60,
                                     what="the patch's cascade to hello and web")
                assert sorted(cascade) == ["hello", "web"], cascade
                timings.append(f"cascade done {time.monotonic() - step:.1f}s after the patch")
            if "org.example.base.patch" in block:
                assert output.splitlines()[-1] == "1", "web rebuilt on the patched base"
        shell.close()
        assert shell.process.returncode == 0
    except BaseException:
        shell.kill()
        raise
    finally:
        print(f"quickstart: {time.monotonic() - started:.1f}s, by block {', '.join(timings)}")

    assert not (clone / ".stack").exists() and not (clone / ".basewatch").exists()
    assert not processes_under(clone), processes_under(clone)
    assert not mounts_under(clone), mounts_under(clone)
    assert not [port for port in PORTS if port_open(port)], "the registry and the daemon are gone"
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert [line for line in status if line != "?? .venv"] == [], "nothing left in the tree"


def rebuilt_on_patch(shell: Shell) -> dict[str, str] | None:
    """hello's and web's runs triggered by the base's change, once both have succeeded; what a
    newcomer sees in `list-runs`, read as JSON."""
    output = shell.run("basewatch task list-runs -o json", timeout=30, name="list-runs")
    runs = [run for run in json.loads(output) if run.get("base_change")]
    if {run["task"] for run in runs} != {"hello", "web"}:
        return None
    failed = [run for run in runs if run["status"] in ("Failed", "Error", "Timeout", "Canceled")]
    assert not failed, failed
    if any(run["status"] != "Succeeded" for run in runs):
        return None
    return {run["task"]: run["id"] for run in runs}
