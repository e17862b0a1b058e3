"""`basewatch serve` as a process (here in the test's own): its port answers (503, `starting`)
while the daemon's modules load, the daemon takes the port over, and its signals are heard from
the first moment. The loading is held by the test, so each order is seen for certain."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from basewatch import serve
from basewatch.errors import ConfigError
from basewatch.http.starting import NOT_CHECKED
from tests.support.inprocess_daemon import free_port

# What the daemon's process imports before its port answers must not take seconds to import.
HEAVY = ["aiohttp", "alembic", "apscheduler", "docker", "dockerfile_parse", "jmespath", "oras",
         "paramiko", "prometheus_client", "pydantic", "requests", "sqlalchemy", "structlog",
         "yaml", "basewatch.config", "basewatch.daemon", "basewatch.store"]


def healthz(url: str) -> tuple[int, dict] | None:
    """The status and report; None while nothing listens."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)
    except urllib.error.URLError:
        return None


async def answer(url: str, wanted=lambda status, report: True, timeout: float = 60):
    """The first /healthz answer that is `wanted`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        answered = await asyncio.to_thread(healthz, url)
        if answered is not None and wanted(*answered):
            return answered
        await asyncio.sleep(0.05)
    raise AssertionError(f"no such /healthz answer from {url} within {timeout:.0f} s")


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    port = free_port()
    path = tmp_path / "basewatch.yml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\nlisten: 127.0.0.1:{port}\n")
    return path, f"http://127.0.0.1:{port}"


class HeldLoading:
    """serve's loading (the settings read, the daemon's modules imported), held until the test
    lets it go; the test's own logging is left as it is."""

    def __init__(self):
        self.begun = threading.Event()
        self.release = threading.Event()
        self.given_up = False  # never let go: serve waited for it, or the test forgot to

    def __call__(self, config_path, log_level):
        self.begun.set()
        self.given_up = not self.release.wait(60)
        assert not self.given_up
        from basewatch.config import load_settings
        from basewatch.daemon import Daemon

        return load_settings(config_path), Daemon

    async def wait_begun(self) -> None:
        assert await asyncio.to_thread(self.begun.wait, 30)

    def set(self) -> None:
        self.release.set()


@pytest.fixture
def held_loading(monkeypatch):
    held = HeldLoading()
    monkeypatch.setattr(serve, "_loaded", held)
    yield held
    held.set()


def test_serve_imports_nothing_heavy_before_its_port_answers():
    code = ("import sys, basewatch.cli, basewatch.serve; "
            f"print([name for name in {HEAVY!r} if name in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout


async def test_healthz_says_starting_while_the_daemon_loads_then_the_daemon_answers(
        config_file, held_loading):
    path, url = config_file
    serving = asyncio.create_task(serve._serve(path, "info"))
    try:
        status, report = await answer(url)
        assert status == 503 and report["status"] == "starting"
        assert report["engine"] == NOT_CHECKED  # the daemon does not exist yet
        assert report["registration"] == {"state": "in_progress", "registered": 0,
                                          "total": 0, "failed": 0}
        held_loading.set()
        status, report = await answer(url, lambda status, report: status == 200)
        assert report["registration"]["state"] == "done"
        assert report["engine"].startswith("cannot reach the Docker Engine")
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 30)
    assert healthz(url) is None


async def test_a_sigterm_while_the_daemon_loads_ends_serve(config_file, held_loading):
    path, url = config_file
    serving = asyncio.create_task(serve._serve(path, "info"))
    await answer(url)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 30)  # the loading's thread left to end by itself
    assert healthz(url) is None
    held_loading.set()  # before the test's loop waits for that thread


def test_serve_ends_at_a_sigterm_without_waiting_for_the_loading(config_file, held_loading):
    """The whole of `serve`, its event loop's end included: the loading's thread, still held,
    is not waited for."""
    path, url = config_file

    def stop_once_answering() -> None:
        for _ in range(600):
            if healthz(url) is not None:  # the signal handlers are in place before the port
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.05)

    threading.Thread(target=stop_once_answering, daemon=True).start()
    serve.serve(path, "info")
    assert held_loading.begun.is_set() and not held_loading.release.is_set()
    assert not held_loading.given_up
    assert healthz(url) is None


async def test_a_sighup_while_the_daemon_loads_reloads_it_once_it_serves(
        config_file, held_loading, caplog):
    caplog.set_level(logging.INFO, logger="basewatch")
    path, url = config_file
    serving = asyncio.create_task(serve._serve(path, "info"))
    try:
        await answer(url)
        os.kill(os.getpid(), signal.SIGHUP)  # heard, not the end of the process
        await answer(url)
        held_loading.set()
        await answer(url, lambda status, report: status == 200)

        async def reloaded() -> None:
            while not any("config reloaded" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(reloaded(), 30)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 30)


async def test_where_the_text_does_not_say_plainly_the_daemon_binds_as_ever(
        config_file, held_loading):
    path, url = config_file
    settings = dict(line.split(": ", 1) for line in path.read_text().splitlines())
    path.write_text("{" + ", ".join(f"{key}: '{value}'" for key, value in settings.items())
                    + "}\n")  # a flow mapping: not read before the config is
    serving = asyncio.create_task(serve._serve(path, "info"))
    try:
        await held_loading.wait_begun()  # after the port would have been bound
        assert healthz(url) is None  # nothing answers before the daemon
        held_loading.set()
        await answer(url, lambda status, report: status == 200)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 30)


async def test_a_config_refused_stops_serve_and_frees_its_port(config_file, held_loading):
    path, url = config_file
    path.write_text(path.read_text() + "poll_intervall: 5s\n")
    serving = asyncio.create_task(serve._serve(path, "info"))
    await answer(url)  # answering meanwhile: the settings are not read yet
    held_loading.set()
    with pytest.raises(ConfigError, match="poll_intervall: unknown key"):
        await asyncio.wait_for(serving, 30)
    assert healthz(url) is None
