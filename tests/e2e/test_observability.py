"""What a machine reads from a running daemon: its log as JSON lines carrying the run and the
base change they are about, /metrics as promtool and the Grafana dashboard read it, and
/api/openapi.json as openapi-spec-validator reads it. One daemon, one real base-image run on the
real engine and registry, for the whole module."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass

import docker
import pytest
import stack
import yaml
from busybox_images import BaseImages

from tests.e2e.test_daemon import write_app
from tests.support.log_lines import json_lines
from tests.support.promql import (alert_expressions, dashboard_expressions, exported_names,
                                  metric_names, promtool)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

API_TOKEN = "obs-api-token-5f1e9a"
REGISTRY_PASSWORD = "obs-registry-password-77c2"
NOTIFY_TOKEN = "obs-notify-token-2b8d"


@dataclass
class Observed:
    output: str  # everything the daemon wrote to stderr and stdout, start to stop
    metrics: str  # /metrics after the run
    openapi: dict
    run: dict  # the base-image run, as GET /api/runs/{id} shows it
    base: str


def _get(url: str, token: str | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


@pytest.fixture(scope="module")
def observed(tmp_path_factory, docker_host) -> Observed:
    root = tmp_path_factory.mktemp("observed")
    registry = stack.Registry(root / "registry", stack.free_port()).start()
    client = docker.DockerClient(base_url=docker_host, version="auto", timeout=300)
    try:
        reg = registry.address
        base = f"{reg}/base:1"
        images = BaseImages(client, root / "images")
        images.build(base, {"/etc/release": "1\n"})
        port = stack.free_port()
        config = {
            "state_dir": "state", "listen": f"127.0.0.1:{port}", "poll_interval": "1s",
            "api_token_env": "BASEWATCH_TOKEN",
            "notifications": {"token_env": "OBS_NOTIFY"},
            "registries": [{"host": reg, "username": "ci", "password_env": "OBS_REG_PW"}],
            "tasks": [{"name": "app", "image": f"{reg}/app:latest",
                       "context": write_app(root, "app", f"FROM {base}\n")}],
        }
        (root / "basewatch.yml").write_text(yaml.safe_dump(config))
        # stderr a pipe and log_format left at auto: JSON lines. debug:all: every library's
        # debug too, so the check that no secret is written covers theirs.
        process = subprocess.Popen(
            [sys.executable, "-m", "basewatch", "serve", "-c", "basewatch.yml",
             "--log-level", "debug:all"],
            env={**os.environ, "DOCKER_HOST": docker_host, "BASEWATCH_TOKEN": API_TOKEN,
                 "OBS_REG_PW": REGISTRY_PASSWORD, "OBS_NOTIFY": NOTIFY_TOKEN},
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Read as it comes: debug:all fills a pipe's buffer long before the daemon is stopped.
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
        reader.start()
        url = f"http://127.0.0.1:{port}"
        try:
            stack.daemon_health(url, process, 30)
            images.build(base, {"/etc/release": "2\n"})  # the patch: a new digest
            runs = lambda: json.loads(_get(f"{url}/api/runs", API_TOKEN))  # noqa: E731
            wait_until(lambda: any(r["status"] == "Succeeded" for r in runs()), 120,
                       "the base-image run to succeed")
            [run] = runs()
            run = json.loads(_get(f"{url}/api/runs/{run['id']}", API_TOKEN))
            metrics = _get(f"{url}/metrics").decode()
            openapi = json.loads(_get(f"{url}/api/openapi.json", API_TOKEN))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            reader.join(timeout=10)
            process.stdout.close()
            output = "".join(lines)
        assert process.returncode == 0, output[-4000:]
        return Observed(output, metrics, openapi, run, base)
    finally:
        client.close()
        registry.stop()


def test_the_log_is_json_lines_and_a_runs_lines_carry_its_run_and_base(observed):
    lines = json_lines(observed.output)  # every line parses
    assert all({"timestamp", "level", "logger", "event"} <= set(line) for line in lines)
    run, change = observed.run, observed.run["base_change"]
    expected = {"run_id": run["id"], "task": "app", "base": observed.base,
                "digest": change["digest"]}
    of_the_run = [line for line in lines if line.get("run_id") == run["id"]]
    assert of_the_run, observed.output[-4000:]
    for line in of_the_run:
        assert {key: line.get(key) for key in expected} == expected, line
    assert any(line["event"].startswith(f"run {run['id']} (app) Succeeded")
               for line in of_the_run)
    # Library lines logged during the run inherit it too (debug:all shows theirs).
    assert any(not line["logger"].startswith("basewatch") for line in of_the_run)
    # The watcher's change and the fan-out that queued the run name the base and digest.
    [seen] = [line for line in lines if line["event"].startswith(f"base {observed.base} (")
              and "changed" in line["event"]]
    assert (seen["base"], seen["digest"]) == (observed.base, change["digest"])
    assert "run_id" not in seen


def test_no_secret_reaches_the_log(observed):
    for secret in (API_TOKEN, REGISTRY_PASSWORD, NOTIFY_TOKEN):
        assert secret not in observed.output


def test_promtool_accepts_the_live_metrics(observed):
    result = promtool("check", "metrics", stdin=observed.metrics)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_and_alert_metric_exists_on_the_live_daemon(observed):
    exported = exported_names(observed.metrics)
    assert "basewatch_reference_last_check_timestamp_seconds" in exported
    for where, expr in {**dashboard_expressions(), **alert_expressions()}.items():
        missing = metric_names(expr) - exported - {"up"}  # up: Prometheus's own
        assert not missing, f"{where}: {sorted(missing)} not on the daemon's /metrics"
    succeeded = 'basewatch_runs_total{status="Succeeded",trigger="Image Update"} 1.0'
    assert succeeded in observed.metrics


def test_the_served_openapi_document_validates(observed):
    from openapi_spec_validator import validate

    validate(observed.openapi)
    assert observed.openapi["openapi"] == "3.1.0"


def test_on_a_terminal_the_log_is_the_text_line(tmp_path):
    """log_format auto, stderr a terminal (a pseudo-terminal here): the line people read."""
    import pty
    import re
    import select

    port = stack.free_port()
    (tmp_path / "basewatch.yml").write_text(yaml.safe_dump(
        {"state_dir": "state", "listen": f"127.0.0.1:{port}"}))
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "basewatch", "serve", "-c", "basewatch.yml"], cwd=tmp_path,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    try:
        def listening() -> bool:
            nonlocal seen
            if select.select([leader], [], [], 0.2)[0]:
                seen += os.read(leader, 65536)
            return b"listening on" in seen
        wait_until(listening, 30, "the daemon's start line on its terminal")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        os.close(leader)
    text = seen.decode().replace("\r\n", "\n")
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    basewatch\.daemon: "
                     r"basewatch is watching 0 base references", text, re.MULTILINE), text
    assert "{" not in text.splitlines()[0], text
