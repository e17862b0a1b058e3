"""docker/healthcheck.py, the image's HEALTHCHECK: healthy only while the daemon answers and
reaches its engine and state disk; a failing registry is not the container's fault."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"
OK = {"status": "ok", "engine": "ok", "disk": "ok", "failing_references": []}


@pytest.fixture
def healthz():
    """A stand-in /healthz on loopback; set `.report` to what it answers."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(server.report).encode()
            self.send_response(503 if server.report.get("status") == "starting" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.report = OK
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def check(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT)], env={"BASEWATCH_HEALTHZ": url},
                          capture_output=True, text=True, timeout=30)


def test_healthy_while_the_engine_and_disk_are_fine(healthz):
    url = f"http://127.0.0.1:{healthz.server_port}/healthz"
    assert check(url).returncode == 0
    healthz.report = {**OK, "status": "degraded", "failing_references": ["r/base:1"]}
    assert check(url).returncode == 0  # a registry's trouble: reported, not the container's


@pytest.mark.parametrize("part", ["engine", "disk"])
def test_unhealthy_without_the_engine_or_the_disk(healthz, part):
    healthz.report = {**OK, "status": "degraded", part: "permission denied"}
    result = check(f"http://127.0.0.1:{healthz.server_port}/healthz")
    assert result.returncode == 1
    assert result.stderr.strip() == f"{part}: permission denied"


def test_unhealthy_when_nothing_answers():
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_port
    result = check(f"http://127.0.0.1:{port}/healthz")
    assert result.returncode == 1 and result.stderr.startswith("no answer from")


def test_not_healthy_yet_while_the_config_is_being_registered(healthz):
    healthz.report = {**OK, "status": "starting",
                      "registration": {"state": "in_progress", "registered": 1000,
                                       "total": 10000, "failed": 0}}
    result = check(f"http://127.0.0.1:{healthz.server_port}/healthz")
    assert result.returncode == 1
    assert result.stderr.strip() == "starting: 1000 of 10000 config tasks registered"
