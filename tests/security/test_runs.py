"""The run lifecycle under hostile input and a hostile host (issue 8): no run stays Running, a
full disk shows in /healthz, uploads live exactly as long as a run needs them, and manual runs
are bounded."""
from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from collections import namedtuple
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support import stores
from tests.e2e.test_daemon import health, start_daemon
from tests.support.inprocess_daemon import running_daemon
from tests.support.loopback import LoopbackServer
from tests.support.tarballs import tarball
from tests.support.uploads import post_build
from tests.support.waiting import wait_for, wait_until

TOKEN = "runs-test-token"

Usage = namedtuple("Usage", "total used free")


async def test_a_full_disk_makes_healthz_say_so(tmp_path, monkeypatch):
    async with running_daemon(tmp_path, monkeypatch) as daemon:
        async with aiohttp.ClientSession() as session:
            async def report() -> dict:
                async with session.get(f"{daemon.url}/healthz") as response:
                    return await response.json()

            assert (await report())["status"] == "degraded"  # no engine here
            monkeypatch.setattr(shutil, "disk_usage",
                                lambda path: Usage(10 * 2 ** 30, 10 * 2 ** 30, 3 * 2 ** 20))

            async def disk_reported():
                found = await report()
                return found if found.get("disk", "ok") != "ok" else None

            found = await wait_for(disk_reported, 15, "/healthz to report the full disk")
        assert found["status"] == "degraded"
        assert found["disk"].startswith("the disk of state_dir is (nearly) full: 3 MiB free")
        assert str(tmp_path) not in found["disk"]


# ---------------------------------------------------------------- on a live daemon and engine

def upload(url: str, files: dict[str, str], spec: dict) -> tuple[int, dict]:
    return post_build(url, tarball(files), spec, TOKEN, timeout=30)


def runs(tmp_path: Path) -> list[tuple]:
    return stores.query(tmp_path / "state",
                        "SELECT id, status, error, retry_of FROM runs ORDER BY seq")


def uploads(tmp_path: Path) -> list[str]:
    folder = tmp_path / "state" / "contexts"
    return sorted(p.name for p in folder.glob("upload-*")) if folder.is_dir() else []


@pytest.fixture
def live(tmp_path, registry, base_images, docker_host):
    """start(**config) -> the daemon's URL; stopped (SIGTERM, no traceback) at the end."""
    base_images.build(f"{registry.address}/base:1", {"/etc/release": "1\n"})
    started = []

    def start(**config) -> str:
        config = {"poll_interval": "1h", "registries": [{"host": registry.address}],
                  "api_token_env": "API_TOKEN", **config}
        process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
        started.append(process)
        health(url, process)
        return url

    start.registry = registry.address
    start.stop = lambda: stop_allowing_run_bugs(started.pop())
    yield start
    for process in started:
        stop_allowing_run_bugs(process)


def stop_allowing_run_bugs(process) -> str:
    """SIGTERM; a clean exit. A run that hit an unexpected error logged its traceback, for
    whoever fixes the bug: that one is allowed, no other."""
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert output.count("Traceback") <= output.count("failed on an unexpected error"), output
    return output


def test_a_nul_in_file_is_refused_before_queuing(tmp_path, live):
    url = live()
    status, answer = upload(url, {"Dockerfile": "FROM scratch\n"},
                            {"image": [f"{live.registry}/x:1"], "file": "Docker\0file"})
    assert status == 400, answer
    assert answer["error"] == "file: a NUL character is not allowed"
    assert runs(tmp_path) == [] and uploads(tmp_path) == []


def test_a_full_disk_under_the_run_log_ends_the_run(tmp_path, live):
    url = live()
    logs = tmp_path / "state" / "logs"
    logs.mkdir(parents=True)
    (logs / "ca1.log").symlink_to("/dev/full")  # every write to ca1's log: ENOSPC
    status, answer = upload(url, {"Dockerfile": f"FROM {live.registry}/base:1\n"},
                            {"image": [f"{live.registry}/full:1"]})
    assert (status, answer["id"]) == (202, "ca1")
    wait_until(lambda: runs(tmp_path)[0][1] not in ("Queued", "Running"), 60,
               "the run to end")
    (run_id, status, error, _), = runs(tmp_path)
    assert status in ("Failed", "Error") and "No space left on device" in error, error
    # The next run is not held back.
    status, answer = upload(url, {"Dockerfile": f"FROM {live.registry}/base:1\n"},
                            {"image": [f"{live.registry}/next:1"]})
    wait_until(lambda: runs(tmp_path)[1][1] == "Succeeded", 60, "the next run to succeed")


@pytest.mark.sqlite_only
def test_a_database_locked_past_its_busy_timeout_loses_no_run(tmp_path, live):
    url = live(max_concurrent_runs=1)
    slow = {"Dockerfile": f"FROM {live.registry}/base:1\nRUN sleep 3\n"}
    assert upload(url, slow, {"image": [f"{live.registry}/a:1"]})[0] == 202
    assert upload(url, slow, {"image": [f"{live.registry}/b:1"]})[0] == 202
    wait_until(lambda: runs(tmp_path)[0][1] == "Running", 60, "the first run to start")
    lock = sqlite3.connect(tmp_path / "state" / "basewatch.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # as a backup or a shell holding the write lock
    try:
        # The fault itself: held past the daemon's 5 s busy_timeout, while the first run
        # records its bases and its end and the second one tries to start.
        time.sleep(10)
        assert [r[1] for r in runs(tmp_path)] == ["Running", "Queued"]
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_until(lambda: [r[1] for r in runs(tmp_path)] == ["Succeeded", "Succeeded"], 90,
               "both runs to succeed")


def api(url: str, method: str, path: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}{path}", method=method,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def test_sigterm_during_a_quick_build_keeps_its_upload_for_the_rerun(tmp_path, live,
                                                                    base_images):
    url = live()
    reg = live.registry
    status, _ = upload(url, {"Dockerfile": f"FROM {reg}/base:1\nCOPY hello /hello\n"
                                           "RUN sleep 4\n", "hello": "uploaded\n"},
                       {"image": [f"{reg}/kept:1"]})
    assert status == 202
    log = tmp_path / "state" / "logs" / "ca1.log"
    wait_until(lambda: log.exists() and "sleep 4" in log.read_text(), 60, "the build to run")
    live.stop()  # SIGTERM: canceled, queued again once
    assert [r[1:] for r in runs(tmp_path)] == [
        ("Canceled", "the daemon shut down during the run", None), ("Queued", None, "ca1")]
    assert len(uploads(tmp_path)) == 1, "the re-run needs the upload"

    live()
    wait_until(lambda: runs(tmp_path)[1][1] not in ("Queued", "Running"), 90,
               "the re-run to end")
    assert runs(tmp_path)[1][1:3] == ("Succeeded", None), runs(tmp_path)
    assert base_images.read_file(f"{reg}/kept:1", "/hello") == "uploaded\n"
    assert uploads(tmp_path) == [], "no run needs it any more"


def test_uploads_no_run_needs_are_removed_at_once(tmp_path, live):
    orphan = tmp_path / "state" / "contexts" / "upload-0123456789abcdef"
    orphan.mkdir(parents=True)
    (orphan / "Dockerfile").write_text("FROM scratch\n")
    url = live(max_concurrent_runs=1)
    assert uploads(tmp_path) == [], "left by a daemon that stopped; no queued run needs it"
    reg = live.registry
    slow = {"Dockerfile": f"FROM {reg}/base:1\nRUN sleep 60\n"}

    # Refused after the upload was received: removed before the answer.
    status, answer = upload(url, slow, {"push": True})
    assert status == 400 and "give at least one image" in answer["error"], answer
    assert uploads(tmp_path) == []

    # Canceled while queued: its upload goes at once; the running build keeps its own.
    assert upload(url, slow, {"image": [f"{reg}/a:1"]})[0] == 202
    assert upload(url, slow, {"image": [f"{reg}/b:1"]})[0] == 202
    wait_until(lambda: runs(tmp_path)[0][1] == "Running", 60, "the first run to start")
    assert len(uploads(tmp_path)) == 2
    assert api(url, "POST", "/api/runs/ca2/cancel")[1]["status"] == "Canceled"
    assert len(uploads(tmp_path)) == 1
    assert api(url, "POST", "/api/runs/ca1/cancel")[0] == 200
    wait_until(lambda: runs(tmp_path)[0][1] == "Canceled", 60, "the first run to end")
    assert uploads(tmp_path) == []


class HostileRegistry(LoopbackServer):
    """Answers every manifest request as issue 8 found registries can: `ratelimit/*` with a
    `RateLimit-Remaining: ²` header, `emptyindex/*` with an index that is an empty list."""

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/v2/", self._base)
        app.router.add_route("*", "/v2/{repository:.+}/manifests/{reference}", self._manifest)
        return app

    async def _base(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _manifest(self, request: web.Request) -> web.Response:
        if request.match_info["repository"] == "ratelimit":
            body = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
            media_type = "application/vnd.docker.distribution.manifest.v2+json"
            extra = {"RateLimit-Remaining": "²"}
        else:
            body, media_type, extra = b"[]", "application/vnd.oci.image.index.v1+json", {}
        headers = {"Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                   "Content-Type": media_type, **extra}
        return web.Response(body=None if request.method == "HEAD" else body, headers=headers)


@pytest.mark.parametrize("repository", ["ratelimit", "emptyindex"])
async def test_a_hostile_registry_answer_ends_the_run(tmp_path, live, repository):
    async with HostileRegistry() as hostile:
        bad = f"127.0.0.1:{hostile.port}"
        url = await asyncio.to_thread(live, registries=[{"host": live.registry}, {"host": bad}])
        status, _ = await asyncio.to_thread(
            upload, url, {"Dockerfile": f"FROM {bad}/{repository}:1\n"},
            {"image": [f"{live.registry}/x:1"]})
        assert status == 202
        await asyncio.to_thread(wait_until, lambda: runs(tmp_path)[0][1] not in
                                ("Queued", "Running"), 60, "the run to end")
        assert runs(tmp_path)[0][1] in ("Failed", "Error") and runs(tmp_path)[0][2]
        # The next run is not held back.
        status, _ = await asyncio.to_thread(
            upload, url, {"Dockerfile": f"FROM {live.registry}/base:1\n"},
            {"image": [f"{live.registry}/next:1"]})
        await asyncio.to_thread(wait_until, lambda: runs(tmp_path)[1][1] == "Succeeded", 60,
                                "the next run to succeed")
        await asyncio.to_thread(live.stop)
