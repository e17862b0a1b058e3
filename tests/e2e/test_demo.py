"""`make demo`'s script, twice in a row, as a newcomer would run it again: each demo starts from a
clean state and announces only the rebuilds of its own patch (runs ca1 and ca2 on the digest it
pushed). The first stops by itself (--exit-after-rebuild); the second is stopped as a person
stops it, Ctrl-C once it says the daemon keeps watching, and must be gone within 5 s with
nothing it started left running: no engine, no registry, no daemon."""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import stack  # scripts/, put on sys.path by tests/conftest.py

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ANNOUNCED = re.compile(r"rebuilt on the patched base \((sha256:[0-9a-f]{64})\) and pushed "
                       r"\((ca\d+), (ca\d+)\)")
KEEPS_WATCHING = "The daemon keeps watching"
CTRL_C_WITHIN = 5.0  # seconds, as the README promises "a couple"
PORTS = (5000, 8080)  # the demo's registry and daemon


def test_a_second_demo_starts_clean_tells_the_truth_and_stops_on_ctrl_c(docker_host):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--exit-after-rebuild"], cwd=REPO,
        env=dict(os.environ, DOCKER_HOST=docker_host), capture_output=True, text=True,
        timeout=300)
    first = result.stdout + result.stderr
    assert result.returncode == 0, first[-4000:]
    print(f"demo 1 (--exit-after-rebuild): {time.monotonic() - started:.1f} s")

    # The second as on a machine with no engine of its own: the demo starts dockerd itself,
    # and Ctrl-C must take that down too.
    started = time.monotonic()
    second, stop = demo_stopped_by_ctrl_c(
        {name: value for name, value in os.environ.items() if name != "DOCKER_HOST"})
    print(f"demo 2 (Ctrl-C): announced after {stop.announced_after:.1f} s, gone "
          f"{stop.took:.2f} s after Ctrl-C; {time.monotonic() - started:.1f} s in all; it had "
          f"running: {', '.join(sorted(stop.processes))}")

    patched = []
    for output in (first, second):
        found = ANNOUNCED.search(output)
        assert found, output[-4000:]
        digest, *run_ids = found.groups()
        assert run_ids == ["ca1", "ca2"], "a clean state: this demo's runs, not the last one's"
        patched.append(digest)
    assert "removing the last demo's state" in second
    assert patched[0] != patched[1], "each demo announces the digest of its own patch"

    assert stop.took < CTRL_C_WITHIN, f"the demo took {stop.took:.1f}s to stop after Ctrl-C"
    if not stack.engine_answers("unix:///var/run/docker.sock"):
        assert "dockerd" in stop.started, "the demo started its own engine"
    left = [f"{name} (pid {pid})" for name, (pid, since) in stop.processes.items()
            if running(pid, since)]
    assert not left, f"still running after the demo stopped: {left}"
    assert not [port for port in PORTS if port_open(port)], "the registry and daemon are gone"
    # An engine's mounts outlive it (the host network's namespace, once a build used it): left
    # there, `make clean` cannot remove .stack/.
    with open("/proc/self/mounts") as mounts:
        left = [line.split()[1] for line in mounts
                if line.split()[1].startswith(f"{REPO / '.stack'}/")]
    assert not left, f"mounted after the demo stopped: {left}"


class Stop:
    announced_after: float  # seconds from the start to "the daemon keeps watching"
    took: float  # seconds from Ctrl-C to the demo's exit
    started: dict[str, int]  # what the demo's stack started: dockerd, registry
    processes: dict[str, tuple[int, str]]  # everything it had running: name -> (pid, start time)


def demo_stopped_by_ctrl_c(env: dict[str, str]) -> tuple[str, Stop]:
    """Run the demo until it says the daemon keeps watching, then Ctrl-C it: SIGINT to its
    process group, as a terminal sends it. Its output, and how the stop went."""
    stop = Stop()
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []
    begun = time.monotonic()
    demo = subprocess.Popen([sys.executable, "scripts/demo.py"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)

    def read() -> None:
        with demo.stdout:
            for line in demo.stdout:
                lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any(KEEPS_WATCHING in line for line in output[-3:]):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            assert line is not None, ("the demo did not say the daemon keeps watching:\n"
                                      + "".join(output)[-4000:])
            output.append(line)
        stop.announced_after = time.monotonic() - begun
        stop.started = json.loads((REPO / ".stack" / "state.json").read_text())["started"]
        stop.processes = {name: (pid, start_time(pid)) for name, pid in descendants(demo.pid)}
        interrupted = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)
        stop.took = time.monotonic() - interrupted
    finally:
        if demo.poll() is None:  # a failure above: leave nothing behind
            os.killpg(demo.pid, signal.SIGTERM)
            demo.wait(timeout=60)
            subprocess.run([sys.executable, "scripts/stack.py", "down"], cwd=REPO)
    reader.join(timeout=10)
    while not lines.empty() and (line := lines.get_nowait()) is not None:
        output.append(line)
    assert demo.returncode == 0, "".join(output)[-4000:]
    return "".join(output), stop


def descendants(pid: int) -> list[tuple[str, int]]:
    """(command name, pid) of every process below `pid`: the daemon, dockerd, containerd..."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
        names[int(entry.name)] = name
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append((f"{names[child]}[{child}]", child))
        todo += children.get(child, [])
    return found


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot: with its pid, it names one process,
    even if the pid is used again later."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except OSError:
        return ""


def running(pid: int, since: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[19] == since and fields[0] != "Z"


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
