"""Two daemons on one PostgreSQL: a run that one of them builds on the real engine has its log
shown through the other as well, while it runs (`task logs` follows it) and after (the API, the
dashboard, the archive), though that one never had the file. Only with `--store=postgres`."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import aiohttp
import pytest

from tests.e2e.test_daemon import health, start_daemon, stop
from tests.support import stores
from tests.support.oras_pull import oras_pull
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]

TOKEN = "shared-logs-token"
STEPS = 6  # the build prints a line a second, so following it live is told apart from after


def api(url: str, path: str, method: str = "GET", body: dict | None = None) -> bytes:
    request = urllib.request.Request(
        url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def follow_with_cli(url: str, run_id: str) -> tuple[int, bytes, list[tuple[float, bytes]]]:
    """`basewatch task logs --run-id RUN` against `url` until it ends: its exit code, its
    stderr, and its lines, each with when it came."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASEWATCH_")}
    lines: list[tuple[float, bytes]] = []
    with subprocess.Popen([sys.executable, "-m", "basewatch", "task", "logs", "--run-id",
                           run_id], env={**env, "BASEWATCH_URL": url, "BASEWATCH_TOKEN": TOKEN},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:

        def read() -> None:
            for line in process.stdout:
                lines.append((time.monotonic(), line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            process.wait(timeout=180)
        finally:
            process.kill()
        reader.join(10)
        errors = process.stderr.read()
    return process.returncode, errors, lines


async def test_a_run_on_one_daemon_is_followed_and_archived_through_the_other(
        tmp_path, registry, base_images, docker_host):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1")
    app = tmp_path / "apps" / "app"
    app.mkdir(parents=True)
    (app / "Dockerfile").write_text(
        f"FROM {reg}/base:1\n"
        f"RUN for i in $(seq 1 {STEPS}); do echo step $i of the build; sleep 1; done\n")
    database, database_env = stores.daemon_database(tmp_path / "shared")  # one for both
    config = {**database, "poll_interval": "1h", "registries": [{"host": reg}],
              "api_token_env": "API_TOKEN",
              "log_archive": {"repository": f"{reg}/basewatch/run-logs"},
              "tasks": [{"name": "app", "image": f"{reg}/app:latest", "context": str(app)}]}
    env = {**database_env, "API_TOKEN": TOKEN}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, a_url = start_daemon(config, tmp_path / "a", docker_host, env=env)
    b = None
    try:
        health(a_url, a)
        wait_until(lambda: health(a_url, a)["status"] != "starting", 60, "A registered app")
        b, b_url = start_daemon(config, tmp_path / "b", docker_host, env=env)
        wait_until(lambda: health(b_url, b)["status"] != "starting", 60, "B started")

        run_id = json.loads(api(a_url, "/api/tasks/app/runs", "POST", {}))["id"]
        # Followed through both daemons from the start, while one of them builds it.
        followed = await asyncio.gather(*(asyncio.to_thread(follow_with_cli, url, run_id)
                                          for url in (a_url, b_url)))
        for code, errors, _ in followed:
            assert code == 0, errors.decode()

        # Which daemon ran it (the run records it); the other never had the file.
        ran_on = json.loads(api(a_url, f"/api/runs/{run_id}"))["daemon"]
        ids = {health(url, process)["cluster"]["daemon"]: name
               for name, url, process in (("a", a_url, a), ("b", b_url, b))}
        runner = ids[ran_on]
        other, other_url, other_lines = ("b", b_url, followed[1][2]) if runner == "a" \
            else ("a", a_url, followed[0][2])
        original = (tmp_path / runner / "state" / "logs" / f"{run_id}.log").read_bytes()
        assert f"Run ID: {run_id} was successful".encode() in original
        assert not (tmp_path / other / "state" / "logs" / f"{run_id}.log").exists()
        for _, _, lines in followed:
            assert b"".join(line for _, line in lines) == original, "followed to its very end"
        # Live through the other daemon: each step's line came about when the build printed it
        # (a second apart), not all at once when the run ended.
        came = {n: next(t for t, line in other_lines if f"step {n} of the build".encode() in line)
                for n in (1, STEPS)}
        assert came[STEPS] - came[1] > (STEPS - 1) * 0.6, came

        assert api(other_url, f"/api/runs/{run_id}/log") == original
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            signed_in = await session.post(f"{other_url}/ui/sign-in", data={"token": TOKEN},
                                           allow_redirects=False, headers={"Origin": other_url})
            assert signed_in.status in (302, 303), await signed_in.text()
            async with session.get(f"{other_url}/ui/runs/{run_id}/log") as dashboard:
                assert dashboard.status == 200 and await dashboard.read() == original

        archived = json.loads(api(other_url, f"/api/runs/{run_id}", "PATCH",
                                  {"archived": True}))
        assert archived["archived"] is True
        [pulled] = await oras_pull(archived["archive_ref"], tmp_path / "pulled")
        assert pulled.read_bytes() == original
    finally:
        outputs = [stop(process) for process in (b, a) if process is not None]
    assert all("cannot copy" not in output for output in outputs), outputs
