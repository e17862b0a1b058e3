"""`basewatch serve` as a person runs it: a real process, real signals, a real engine."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import stack
import yaml

from tests.support import stores

pytestmark = pytest.mark.e2e


def start_daemon(config: dict, tmp_path: Path, docker_host: str,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = stack.free_port()
    config = {"state_dir": "state", "listen": f"127.0.0.1:{port}", **config}
    # With --store=postgres, the daemon's state goes to a database of its own on the session's
    # server (tests/support/stores.py), unless the test names a database itself.
    database, database_env = ({}, {}) if "database" in config else stores.daemon_database(
        tmp_path / config["state_dir"])
    config = {**config, **database}
    path = tmp_path / "basewatch.yml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "basewatch", "serve", "--config", str(path)],
        env={**os.environ, "DOCKER_HOST": docker_host, **database_env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    return process, f"http://127.0.0.1:{port}"


def health(url: str, process: subprocess.Popen, timeout: float = 30) -> dict:
    try:
        return stack.daemon_health(url, process, timeout)
    except RuntimeError as exc:
        output = process.stdout.read() if process.poll() is not None else ""
        raise AssertionError(f"{exc}\n{output}") from None


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        # Say where it is stuck: the daemon logs every task's stack on SIGUSR1.
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"the daemon did not stop within 30 s; its log ends:\n"
                             f"{output[-6000:]}") from None
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    return output


def write_app(tmp_path: Path, name: str, dockerfile: str | None) -> str:
    context = tmp_path / "apps" / name
    context.mkdir(parents=True)
    if dockerfile is not None:
        (context / "Dockerfile").write_text(dockerfile)
    return f"apps/{name}"


def test_daemon_keeps_running_without_engine_or_registry(tmp_path):
    dead_registry = f"127.0.0.1:{stack.free_port()}"
    config = {
        "poll_interval": "1s", "registries": [{"host": dead_registry}],
        "tasks": [
            {"name": "app", "context": write_app(tmp_path, "app", f"FROM {dead_registry}/b:1\n"),
             "image": f"{dead_registry}/app:latest"},
            {"name": "broken", "context": write_app(tmp_path, "broken", None),
             "image": f"{dead_registry}/broken:latest"},
        ],
    }
    process, url = start_daemon(config, tmp_path, f"unix://{tmp_path}/no-engine.sock")
    report = health(url, process)
    assert report["status"] == "degraded"
    assert "cannot reach the Docker Engine" in report["engine"]
    deadline = time.monotonic() + 15
    while not report["failing_references"] and time.monotonic() < deadline:
        time.sleep(0.5)
        report = health(url, process)
    assert report["failing_references"] == [f"{dead_registry}/b:1"]
    # SIGUSR1: every task's stack in the log, for a daemon that seems stuck; it goes on.
    process.send_signal(signal.SIGUSR1)
    assert health(url, process)["status"] == "degraded"
    output = stop(process)
    assert "task broken not registered" in output and "no such dockerfile" in output.lower()
    assert f"cannot reach registry {dead_registry}" in output
    assert "SIGUSR1: " in output and "task watcher:" in output


def test_sigterm_cancels_the_run_in_progress(tmp_path, registry, base_images, docker_host):
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    config = {
        "poll_interval": "1s", "registries": [{"host": reg}],
        "tasks": [{"name": "slow", "image": f"{reg}/slow:latest",
                   "context": write_app(tmp_path, "slow", f"FROM {reg}/base:1\nRUN sleep 60\n")}],
    }
    process, url = start_daemon(config, tmp_path, docker_host)
    health(url, process)
    base_images.build(f"{reg}/base:1", {"/etc/release": "2\n"})
    deadline = time.monotonic() + 30
    while not health(url, process)["running"]:
        assert time.monotonic() < deadline, "the rebuild never started"
        time.sleep(0.3)
    output = stop(process)
    assert "shutting down" in output
    rows = stores.query(tmp_path / "state", "SELECT id, status, error, retry_of FROM runs")
    # Canceled, and queued again once: the next start builds it.
    assert rows == [("ca1", "Canceled", "the daemon shut down during the run", None),
                    ("ca2", "Queued", None, "ca1")]
    log = (tmp_path / "state" / "logs" / "ca1.log").read_text()
    assert "was canceled" in log
