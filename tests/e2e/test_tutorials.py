"""Every tutorial in docs/tutorials/ followed as a reader would: its marked blocks typed into
one shell, in order, from a stand-in for a fresh clone, against the real engine, registry and
daemon; each `expect` in the tutorial is an outcome it claims (tests/support/tutorials.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.tutorials import REPO, RUNNABLE, TUTORIALS, Session, parse, perform

pytestmark = pytest.mark.e2e

# The fixed ports the tutorials name, each swapped for a free one.
PORTS = ("5000", "5001", "8080")


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """What a reader's clone offers the tutorials: scripts/stack.py (which keeps its state in
    the clone's .stack/) and .venv, here the virtualenv running the tests."""
    root = tmp_path / "clone"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "stack.py", root / "scripts")
    (root / ".venv").symlink_to(Path(sys.prefix))
    yield root
    subprocess.run([sys.executable, "scripts/stack.py", "down"], cwd=root, capture_output=True,
                   timeout=120)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", RUNNABLE)
def test_the_tutorial_does_what_it_says(name, clone, tmp_path, docker_host):
    tutorial = parse(TUTORIALS / name)
    ports = dict(zip(PORTS, map(str, free_ports(len(PORTS)))))
    replacements = {f"127.0.0.1:{old}": f"127.0.0.1:{new}" for old, new in ports.items()}
    replacements["scripts/stack.py up"] = f"scripts/stack.py up --registry-port {ports['5000']}"
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("BASEWATCH_", "VIRTUAL_ENV"))}
    # The daemon and the CLI the tutorial starts import this tree, not the installed one.
    env.update(HOME=str(home), DOCKER_HOST=docker_host,
               PYTHONPATH=os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH")))))
    session = Session(clone, env, tmp_path / "session")
    started = time.monotonic()
    try:
        perform(tutorial, session, replacements)
    finally:
        session.close()
        for log in sorted(home.glob("**/*.log")):
            print(f"--- {log.relative_to(home)} ---\n{log.read_text()[-3000:]}")
    print(f"{name}: {len(tutorial.steps)} steps in {time.monotonic() - started:.1f} s")
