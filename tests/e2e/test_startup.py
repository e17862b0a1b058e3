"""Start-up with a config of thousands of tasks: `basewatch serve` answers /healthz at once
(503, `starting`, with the registration's progress), registers the tasks in the background
over a real registry, and is done; SIGHUP and SIGTERM mid-registration do no harm."""
from __future__ import annotations

import asyncio
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
import stack

from tests.support.config_tasks import base_reference, write_tasks
from tests.support.oci import ImagePusher
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

TASKS, BASES, BROKEN = 2000, 40, 1234
TOKEN = "startup-token"
# How long the slow registry takes to answer: the registration is still going when /healthz
# is first asked, however fast this machine is.
SLOW_SECONDS = 3.0


class SlowRegistry(http.server.ThreadingHTTPServer):
    """Answers every request with a 404, after SLOW_SECONDS."""

    daemon_threads = True

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _slow_404(self):
                time.sleep(SLOW_SECONDS)
                body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = _slow_404

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def slow_registry():
    server = SlowRegistry()
    yield server
    server.shutdown()
    server.server_close()


def healthz(url: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


def api(url: str, path: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(f"{url}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


def start(tmp_path: Path, registry: str, slow: str) -> tuple[subprocess.Popen, str, int]:
    async def push() -> None:
        async with aiohttp.ClientSession() as session:
            pusher = ImagePusher(session, registry)
            await asyncio.gather(*(pusher.push_image(base_reference(registry, n)
                                                     .split("/", 1)[1].split(":")[0], "1")
                                   for n in range(BASES)))

    asyncio.run(push())
    port = stack.free_port()
    lines = [f"state_dir: {tmp_path / 'state'}", f"listen: 127.0.0.1:{port}",
             "api_token_env: STARTUP_TOKEN", "registries:", f"  - host: {registry}",
             f"  - host: {slow}"]
    tasks = write_tasks(tmp_path / "contexts", registry, TASKS, BASES, frozenset({BROKEN}))
    # The first task waits on the slow registry for its base's digest.
    (tmp_path / "contexts" / "task-00000" / "Dockerfile").write_text(f"FROM {slow}/slow:1\n")
    config = tmp_path / "basewatch.yml"
    config.write_text("\n".join(lines + tasks) + "\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "basewatch", "serve", "--config", str(config)],
        env={**os.environ, "STARTUP_TOKEN": TOKEN,
             "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, f"http://127.0.0.1:{port}", port


def port_open(port: int, process: subprocess.Popen, timeout: float = 60) -> float:
    """When the daemon's port first takes a connection (time.monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return time.monotonic()
        time.sleep(0.01)
    raise AssertionError("the daemon's port did not open")


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    return output


def test_healthz_answers_at_once_while_thousands_of_config_tasks_register(
        tmp_path, registry, slow_registry):
    process, url, port = start(tmp_path, registry.address, slow_registry.address)
    try:
        opened = port_open(port, process)
        status, headers, report = healthz(url)
        assert time.monotonic() - opened < 1.0
        assert status == 503 and headers["Retry-After"] == "1"
        assert report["status"] == "starting"
        assert report["registration"]["state"] == "in_progress"
        assert report["registration"]["total"] in (0, TASKS)  # 0: the file still being read
        # A config task the registration has not reached: come back, not "no such task".
        status, headers, body = api(url, "/api/tasks/app-01999")
        assert status == 503 and headers["Retry-After"] == "1", body
        assert "not registered yet" in body["error"]
        # A push heard now would reach only the tasks registered so far: refused, as a daemon
        # not listening yet refused it; the registry sends it again.
        push = urllib.request.Request(f"{url}/webhooks/registry", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(push, timeout=5)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"
        refused.value.close()
        process.send_signal(signal.SIGHUP)  # waits for the registration, then syncs again

        def done():
            status, _, report = healthz(url)
            return report["registration"]["state"] == "done" and (status, report)

        status, report = wait_until(done, 120, "the config's tasks registered")
        assert status == 200 and report["status"] == "degraded"
        assert report["registration"] == {"state": "done", "registered": TASKS - 1,
                                          "total": TASKS, "failed": 1}
        assert list(report["unregistered_tasks"]) == [f"app-{BROKEN:05d}"]
        assert report["watched"] >= BASES
        status, _, task = api(url, "/api/tasks/app-01999")
        assert status == 200 and task["bases"], task
    finally:
        output = stop(process)
    assert f"config tasks registered: {TASKS - 1} of {TASKS}" in output
    assert "config reloaded" in output


def test_a_daemon_stopped_mid_registration_stops_at_once_and_registers_on_its_next_start(
        tmp_path, registry, slow_registry):
    process, url, port = start(tmp_path, registry.address, slow_registry.address)
    port_open(port, process)
    assert healthz(url)[2]["registration"]["state"] == "in_progress"
    stopped = time.monotonic()
    output = stop(process)
    assert time.monotonic() - stopped < SLOW_SECONDS + 5
    assert "config tasks registered" not in output
    process = subprocess.Popen(process.args, env={
        **os.environ, "STARTUP_TOKEN": TOKEN,
        "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        report = stack.daemon_health(url, process, timeout=120)  # 200: registered
        assert report["registration"]["registered"] == TASKS - 1
    finally:
        stop(process)


def test_a_task_the_config_refuses_still_stops_serve_with_its_message(tmp_path):
    """The tasks are read once the daemon serves: a bad one stops it all the same, with the
    message and exit code a start before serving gave."""
    (tmp_path / "app").mkdir()
    (tmp_path / "basewatch.yml").write_text(
        f"state_dir: state\nlisten: 127.0.0.1:{stack.free_port()}\ntasks:\n"
        "  - {name: app, context: ./app, image: ['reg.example:5000/app:1'], platforms: x}\n")
    result = subprocess.run(
        [sys.executable, "-m", "basewatch", "serve", "--config", "basewatch.yml"],
        cwd=tmp_path, env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "basewatch: error: basewatch.yml: tasks[0].platforms: unknown key; did you mean "
        "`platform`?")


def small_serve(tmp_path: Path) -> tuple[subprocess.Popen, str, int]:
    """`basewatch serve` with no tasks and no engine, from the first moment of its process."""
    port = stack.free_port()
    (tmp_path / "basewatch.yml").write_text(
        f"state_dir: state\nlisten: 127.0.0.1:{port}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "basewatch", "serve", "--config", "basewatch.yml"],
        cwd=tmp_path, env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, f"http://127.0.0.1:{port}", port


def test_a_sigterm_as_soon_as_the_port_answers_stops_serve_cleanly(tmp_path):
    """The port answers before the daemon's modules are loaded: its signals are handled from
    then on, whatever the daemon has got to."""
    process, url, port = small_serve(tmp_path)
    port_open(port, process)
    status, _, report = healthz(url)
    assert status in (200, 503) and "registration" in report, report
    stop(process)


def test_a_sighup_as_soon_as_the_port_answers_reloads_once_the_daemon_serves(tmp_path):
    process, url, port = small_serve(tmp_path)
    try:
        port_open(port, process)
        process.send_signal(signal.SIGHUP)
        stack.daemon_health(url, process)  # 200: alive, and registered
    finally:
        output = stop(process)
    assert "config reloaded" in output
