"""Three daemons on one PostgreSQL and two build engines (dockerd on loopback TCP with TLS
certificates made by the test), as docs/scale-out.md sets them up.

Fifty tasks on one base. The registry notifies two of the daemons (followers both) of every
push. A patch rebuilds each task exactly once, spread over both engines, though the leader is
killed with SIGKILL mid-cascade (another daemon takes the lead, and the runs the dead one had
in progress are failed and run again once). A second patch, with one engine stopped mid-build:
its runs are retried on the other. Runs and the graph read the same through every daemon."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml
from sqlalchemy.engine import make_url

import stack  # scripts/, put on sys.path by tests/conftest.py
from tests.e2e.test_engine_pool import tcp_engines  # noqa: F401 (the fixture, used by name)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TASKS = 50
SLOTS = 3  # each engine's max_concurrent_runs
NOTIFY_TOKEN = "three-daemons-notify"
API_TOKEN = "three-daemons-api"


class DaemonProcess:
    """`basewatch serve` in a process of its own, its log in a file (three daemons' logs over
    a long cascade would fill a pipe nobody reads)."""

    def __init__(self, name: str, root: Path, config: dict, env: dict[str, str]):
        self.name = name
        self.root = root
        self.port = stack.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        self.config = {**config, "state_dir": str(root / "state"),
                       "listen": f"127.0.0.1:{self.port}",
                       "cluster": {"name": name, "heartbeat_seconds": 0.5,
                                   "lease_seconds": 5}}
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> "DaemonProcess":
        path = self.root / "basewatch.yml"
        path.write_text(yaml.safe_dump(self.config))
        with open(self.root / "daemon.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "basewatch", "serve", "--config", str(path)],
                env={**os.environ, "PYTHONPATH": str(REPO), **self.env}, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.root)
        return self

    @property
    def log(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            assert "Traceback" not in self.log, self.log[-6000:]


async def get(url: str, text: bool = False):
    async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {API_TOKEN}"}) as session:
        async with session.get(url) as response:
            return response.status, await (response.text() if text
                                           else response.json(content_type=None))


async def healthy(daemon: DaemonProcess) -> dict | None:
    if daemon.process.poll() is not None:
        raise AssertionError(f"daemon {daemon.name} exited:\n{daemon.log[-6000:]}")
    try:
        status, body = await get(f"{daemon.url}/healthz")
    except aiohttp.ClientError:
        return None
    return body if status == 200 else None


class Runs:
    """The runs table, read from outside as a person would."""

    def __init__(self, url: str):
        self.url = make_url(url)

    async def rows(self, since: int = 0) -> list[dict]:
        connection = await asyncpg.connect(host=self.url.host, port=self.url.port,
                                           user=self.url.username, password=self.url.password,
                                           database=self.url.database)
        try:
            return [dict(row) for row in await connection.fetch(
                "SELECT seq, id, task, status, error, retry_of, engine, daemon FROM runs"
                " WHERE seq > $1 ORDER BY seq", since)]
        finally:
            await connection.close()

    async def slots(self) -> dict[str, int]:
        """Each engine's slots held now, whichever daemon holds them."""
        connection = await asyncpg.connect(host=self.url.host, port=self.url.port,
                                           user=self.url.username, password=self.url.password,
                                           database=self.url.database)
        try:
            return {row["engine"]: row["n"] for row in await connection.fetch(
                "SELECT engine, count(*) AS n FROM engine_slots GROUP BY engine")}
        finally:
            await connection.close()

    async def last_seq(self) -> int:
        rows = await self.rows()
        return rows[-1]["seq"] if rows else 0


def check_each_task_built_once(rows: list[dict], tasks: list[str]) -> None:
    succeeded = Counter(row["task"] for row in rows if row["status"] == "Succeeded")
    assert succeeded == Counter(tasks), f"built more or less than once: {succeeded}"
    by_id = {row["id"]: row for row in rows}
    for row in rows:
        if row["status"] != "Succeeded":
            (rerun,) = [r for r in rows if r["retry_of"] == row["id"]]
            assert rerun["status"] == "Succeeded", (row, rerun)
        if row["retry_of"] is not None:
            assert by_id[row["retry_of"]]["status"] == "Failed"


@pytest.mark.timeout(600)  # two cascades of fifty builds, and two engines to stop at the end
async def test_three_daemons_on_one_postgres_and_two_engines(tmp_path, start_registry,
                                                             base_images, request):
    engines = request.getfixturevalue("tcp_engines")
    # Outside tmp_path, which only root may enter: the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="bw-pg-"))
    postgres = stack.Postgres(root, stack.free_port(), durable=False).start()
    daemons: list[DaemonProcess] = []
    try:
        await three_daemons(tmp_path, postgres, start_registry, base_images, engines, daemons)
    finally:
        for daemon in daemons:
            daemon.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


async def three_daemons(tmp_path, postgres, start_registry, base_images, engines,
                        daemons: list[DaemonProcess]) -> None:
    one, two = engines
    database_url = postgres.url()
    runs = Runs(database_url)
    ports = [stack.free_port() for _ in range(3)]
    names = ["d1", "d2", "d3"]
    # Both followers hear of every push: a notification de-duplicated in the database.
    registry = start_registry(
        notify_url=f"http://127.0.0.1:{ports[1]}/webhooks/registry",
        notify_also=[f"http://127.0.0.1:{ports[2]}/webhooks/registry"],
        notify_headers={"Authorization": [f"Bearer {NOTIFY_TOKEN}"]})
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    tasks = [f"app{n:02d}" for n in range(TASKS)]
    task_settings = []
    for name in tasks:
        context = tmp_path / "apps" / name
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(
            f"FROM {reg}/base:1\nRUN echo {name} > /name && sleep 2\n")
        task_settings.append({"name": name, "context": str(context),
                              "image": [f"{reg}/{name}:latest"]})
    config = {
        "database": {"url_env": "BASEWATCH_DATABASE_URL"},
        "notifications": {"token_env": "NOTIFY_TOKEN"},
        "api_token_env": "API_TOKEN",
        # Pushes arrive as notifications; polling is the leader's safety net, not the trigger.
        "poll_interval": "1h",
        "registries": [{"host": reg}],
        "engines": [{"name": engine.name, "host": engine.host, "max_concurrent_runs": SLOTS,
                     "platforms": ["linux/amd64"],
                     "tls": {"ca": str(engine.tls.ca), "cert": str(engine.tls.client_cert),
                             "key": str(engine.tls.client_key)}} for engine in (one, two)],
        "tasks": task_settings,
    }
    env = {"BASEWATCH_DATABASE_URL": database_url, "NOTIFY_TOKEN": NOTIFY_TOKEN,
           "API_TOKEN": API_TOKEN}
    for name, port in zip(names, ports):
        daemon = DaemonProcess(name, tmp_path / name, config, env)
        daemon.port, daemon.url = port, f"http://127.0.0.1:{port}"
        daemon.config["listen"] = f"127.0.0.1:{port}"
        daemons.append(daemon)
    d1, d2, d3 = daemons
    d1.start()  # first, so it leads
    health = await wait_for(lambda: healthy(d1), 60, "d1 serving with its tasks registered")
    assert health["cluster"]["leader"] is True
    d2.start()
    d3.start()
    for daemon in (d2, d3):
        health = await wait_for(lambda: healthy(daemon), 60, f"{daemon.name} serving")
        assert health["cluster"]["leader"] is False
    assert sorted(health["cluster"]["daemons"]) == names

    # Every engine's load, sampled all along: its slots hold across the three daemons.
    most_held: Counter = Counter()

    async def sample_slots() -> None:
        while True:
            for engine, held in (await runs.slots()).items():
                most_held[engine] = max(most_held[engine], held)
            await asyncio.sleep(0.2)

    sampling = asyncio.create_task(sample_slots())

    # --- a patch, the leader killed mid-cascade ---------------------------------------------
    before = await runs.last_seq()
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "2\n"})

    async def some_running():
        rows = await runs.rows(before)
        return sum(row["status"] == "Running" and row["daemon"].startswith("d1/")
                   for row in rows) >= 1 and sum(row["status"] == "Succeeded"
                                                 for row in rows) >= 3

    await wait_for(some_running, 120, "the cascade under way, d1 building")
    killed_at = time.monotonic()
    d1.kill()

    async def new_leader():
        for daemon in (d2, d3):
            health = await healthy(daemon)
            if health is not None and health["cluster"]["leader"]:
                return daemon
        return None

    leader = await wait_for(new_leader, 30, "a survivor leading")
    took_over = time.monotonic() - killed_at
    print(f"{leader.name} leads {took_over:.1f}s after d1 was killed")

    async def all_built(since: int):
        rows = await runs.rows(since)
        done = {row["task"] for row in rows if row["status"] == "Succeeded"}
        unfinished = [row for row in rows if row["status"] in ("Queued", "Running")]
        return rows if done == set(tasks) and not unfinished else None

    rows = await wait_for(lambda: all_built(before), 300, "every task rebuilt")
    check_each_task_built_once(rows, tasks)
    interrupted = [row for row in rows if row["status"] == "Failed"]
    assert interrupted, "d1 had runs in progress when it was killed"
    for row in interrupted:
        assert row["error"] == "the daemon d1 stopped while the run was in progress", row
    built_on = Counter(row["engine"] for row in rows if row["status"] == "Succeeded")
    assert set(built_on) == {"one", "two"}, built_on
    print(f"first patch: {len(interrupted)} runs interrupted by the kill; built on {built_on}; "
          f"claimed by {Counter(row['daemon'].split('/')[0] for row in rows)}")
    # The registry notified both followers of each push: one run per task all the same.
    queued_by_patch = [row for row in rows if row["retry_of"] is None]
    assert len(queued_by_patch) == TASKS

    # What a person reads is the same through either daemon.
    _, runs_via_d2 = await get(f"{d2.url}/api/runs?top=200")
    _, runs_via_d3 = await get(f"{d3.url}/api/runs?top=200")
    assert runs_via_d2 == runs_via_d3 and len(runs_via_d2) == len(rows)
    assert (await get(f"{d2.url}/api/graph"))[1] == (await get(f"{d3.url}/api/graph"))[1]
    # A run's log, through the daemon that built it and through another: the same bytes.
    built = next(row for row in rows if row["status"] == "Succeeded"
                 and row["daemon"].startswith(("d2/", "d3/")))
    builder, other = (d2, d3) if built["daemon"].startswith("d2/") else (d3, d2)
    _, log_there = await get(f"{builder.url}/api/runs/{built['id']}/log", text=True)
    _, log_here = await get(f"{other.url}/api/runs/{built['id']}/log", text=True)
    assert f"Run ID: {built['id']} was successful" in log_there
    assert log_here == log_there

    # --- a second patch, engine one stopped mid-build ----------------------------------------
    before = await runs.last_seq()
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "3\n"})

    async def one_building():
        rows = await runs.rows(before)
        return any(row["status"] == "Running" and row["engine"] == "one" for row in rows)

    await wait_for(one_building, 120, "a run building on engine one")
    await asyncio.to_thread(one.stop)
    rows = await wait_for(lambda: all_built(before), 300, "every task rebuilt again")
    check_each_task_built_once(rows, tasks)
    lost = [row for row in rows if row["status"] == "Failed"]
    assert lost, "engine one had runs in progress when it stopped"
    for row in lost:
        assert row["engine"] == "one" and "build engine one" in row["error"], row
        (rerun,) = [r for r in rows if r["retry_of"] == row["id"]]
        assert rerun["engine"] == "two", rerun
    print(f"second patch: {len(lost)} runs lost with engine one, each rebuilt on two")
    sampling.cancel()
    print(f"most slots held at once: {dict(most_held)}")
    assert set(most_held) == {"one", "two"}
    assert max(most_held.values()) <= SLOTS, most_held
    status, health = await get(f"{d2.url}/healthz")
    assert health["engines"]["one"]["state"] == "down"
    assert health["cluster"]["daemons"] == ["d2", "d3"]
