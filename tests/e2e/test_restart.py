"""Nothing lost: the daemon is killed with SIGKILL, started again, and the rebuilds still happen."""
from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from basewatch.membership import default_name
from tests.support import stores
from tests.e2e.test_daemon import health, start_daemon, stop, write_app
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def runs(tmp_path: Path) -> list[tuple]:
    return stores.query(tmp_path / "state",
                        "SELECT id, status, retry_of, error FROM runs ORDER BY seq")


def kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)


def test_sigkill_between_detection_and_build_loses_nothing(tmp_path, registry, base_images,
                                                           docker_host):
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    config = {
        # The settle window holds the detected change long enough to kill the daemon before
        # the build; the window is persisted with the run, so the restart honours what is left.
        "poll_interval": "1s", "settle_window": "6s", "registries": [{"host": reg}],
        "tasks": [{"name": "app", "image": f"{reg}/app:latest",
                   "context": write_app(tmp_path, "app", f"FROM {reg}/base:1\n")}],
    }
    process, url = start_daemon(config, tmp_path, docker_host)
    health(url, process)
    base_images.build(f"{reg}/base:1", {"/etc/release": "2\n"})
    wait_until(lambda: runs(tmp_path), 30, "the change to be detected")
    assert runs(tmp_path) == [("ca1", "Queued", None, None)]
    kill(process)

    process, url = start_daemon(config, tmp_path, docker_host)
    health(url, process)
    wait_until(lambda: runs(tmp_path)[0][1] != "Queued", 60, "the queued run to run")
    wait_until(lambda: runs(tmp_path)[0][1] == "Succeeded", 60, "the run to succeed")
    time.sleep(2)  # a few poll cycles: the change must not be seen a second time
    output = stop(process)
    assert runs(tmp_path) == [("ca1", "Succeeded", None, None)], output
    assert base_images.read_file(f"{reg}/app:latest", "/etc/release") == "2\n"


def test_sigkill_during_a_build_fails_it_and_runs_it_again_once(tmp_path, registry, base_images,
                                                                docker_host):
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    config = {
        "poll_interval": "1s", "registries": [{"host": reg}],
        "tasks": [{"name": "app", "image": f"{reg}/app:latest",
                   "context": write_app(tmp_path, "app", f"FROM {reg}/base:1\nRUN sleep 4\n")}],
    }
    process, url = start_daemon(config, tmp_path, docker_host)
    health(url, process)
    base_images.build(f"{reg}/base:1", {"/etc/release": "2\n"})
    wait_until(lambda: runs(tmp_path) and runs(tmp_path)[0][1] == "Running", 30,
               "the build to start")
    killed_name = default_name().rsplit("-", 1)[0] + f"-{process.pid}"
    kill(process)

    process, url = start_daemon(config, tmp_path, docker_host)
    health(url, process)
    wait_until(lambda: len(runs(tmp_path)) == 2 and runs(tmp_path)[1][1] == "Succeeded", 90,
               "the re-run to succeed")
    output = stop(process)
    # On PostgreSQL the restarted daemon is a new member, and the one that died is named.
    killed = "" if not stores.on_postgres() else f" {killed_name}"
    assert runs(tmp_path) == [
        ("ca1", "Failed", None, f"the daemon{killed} stopped while the run was in progress"),
        ("ca2", "Succeeded", "ca1", None),
    ], output
    assert re.search(r"run ca1 was interrupted when (the|its) daemon stopped: marked Failed, "
                     r"re-queued as ca2", output), output
