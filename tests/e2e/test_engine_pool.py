"""A pool of two build engines, each a dockerd on loopback TCP with TLS certificates made here:
a base patch rebuilds every dependent once, spread over both; an engine stopped mid-build has
its run retried on the other, shows down in /healthz and /metrics, and is back once restarted."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

import stack  # scripts/, put on sys.path by tests/conftest.py
from basewatch.config import (
    Config,
    EngineSettings,
    EngineTLSSettings,
    RegistrySettings,
    TaskSettings,
)
from basewatch.daemon import Daemon
from basewatch.models import RunStatus
from tests.support.engine_tls import EngineTLSFiles, make_engine_tls
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEPENDENTS = ("t1", "t2", "t3", "t4", "t5")
TOKEN = "engine-pool-token"


@dataclass
class TcpEngine:
    """A dockerd of the pool: on loopback TCP with --tlsverify (and on a socket of its own)."""

    name: str
    root: Path
    port: int
    tls: EngineTLSFiles
    engine: stack.Engine | None = None

    @property
    def host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.engine = stack.Engine.start(self.root, tcp=f"127.0.0.1:{self.port}",
                                         tls=self.tls.server)

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    def settings(self, max_concurrent_runs: int) -> EngineSettings:
        return EngineSettings(
            name=self.name, host=self.host, max_concurrent_runs=max_concurrent_runs,
            platforms=["linux/amd64"],
            tls=EngineTLSSettings(ca=self.tls.ca, cert=self.tls.client_cert,
                                  key=self.tls.client_key))


@pytest.fixture
def tcp_engines(tmp_path):
    # Short folders: containerd's sockets live under them (see stack.Engine.start).
    tls = make_engine_tls(tmp_path / "tls")
    engines = [TcpEngine(name, Path(tempfile.mkdtemp(prefix=f"bw-{name}-")), stack.free_port(),
                         tls) for name in ("one", "two")]
    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # side by side
            list(pool.map(TcpEngine.start, engines))
        print(f"two TLS engines started in {time.monotonic() - started:.1f}s")
        yield engines
    finally:
        for engine in engines:
            engine.stop()
            if engine.engine is None:
                stack.Engine(engine.host).stop(remove=engine.root)
            shutil.rmtree(engine.root, ignore_errors=True)


def task(tmp_path: Path, name: str, dockerfile: str, image: str) -> TaskSettings:
    context = tmp_path / "apps" / name
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    return TaskSettings(name=name, context=context, image=[image])


def cli(url: str, *args: str):
    env = {**os.environ, "BASEWATCH_URL": url, "BASEWATCH_TOKEN": TOKEN,
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "basewatch", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def get(url: str, text: bool = False):
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return await (response.text() if text else response.json(content_type=None))


def engine_metric(metrics: str, name: str, engine: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(f'{name}{{engine="{engine}"}} '):
            return float(line.split()[-1])
    return None


async def test_a_pool_of_two_tls_engines(tmp_path, registry, base_images, tcp_engines,
                                         monkeypatch):
    monkeypatch.setenv("BASEWATCH_POOL_TEST_TOKEN", TOKEN)
    one, two = tcp_engines
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    await asyncio.to_thread(base_images.build, f"{reg}/slowbase:1", {"/etc/release": "1\n"})
    tasks = [task(tmp_path, name, f"FROM {reg}/base:1\nRUN echo {name} > /name\n",
                  f"{reg}/{name}:latest") for name in DEPENDENTS]
    tasks.append(task(tmp_path, "slow", f"FROM {reg}/slowbase:1\nRUN sleep 6\n",
                      f"{reg}/slow:latest"))
    steps = tmp_path / "apps" / "steps"
    steps.mkdir(parents=True)
    (steps / "greeting").write_text("hello from the workspace\n")
    (steps / "acr-task.yaml").write_text(
        f"version: v1.1.0\nsteps:\n  - id: hello\n    cmd: {reg}/base:1 cat greeting\n")
    tasks.append(TaskSettings(name="steps", context=steps, file="acr-task.yaml"))
    port = stack.free_port()
    url = f"http://127.0.0.1:{port}"
    config = Config(state_dir=tmp_path / "state", listen=f"127.0.0.1:{port}", poll_interval=3600,
                    registries=[RegistrySettings(host=reg)], tasks=tasks,
                    engines=[one.settings(1), two.settings(2)],
                    api_token_env="BASEWATCH_POOL_TEST_TOKEN")
    daemon = Daemon(config)
    await daemon.start()
    try:
        health = await get(f"{url}/healthz")
        assert health["status"] == "ok", health
        assert {n: (s["state"], s["max_concurrent_runs"]) for n, s in health["engines"].items()
                } == {"one": ("up", 1), "two": ("up", 2)}

        # A base patch: every dependent rebuilt once, over both engines, within their slots.
        # Engine one's load as the pool holds it (a run's started_at is taken before it gets
        # its slot, so the runs' times cannot show it), sampled while the cascade runs.
        most_on_one = 0

        async def sample_engine_one() -> None:
            nonlocal most_on_one
            while True:
                most_on_one = max(most_on_one, daemon.pool.states()["one"]["runs"])
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample_engine_one())
        started = time.monotonic()
        await asyncio.to_thread(base_images.build, f"{reg}/base:1",
                                {"/etc/release": "1\n", "/etc/patch": "fixed\n"})
        assert await daemon.watcher.check_references(lambda b: b == f"{reg}/base:1") == 1

        async def all_done():
            runs = [r for r in await daemon.store.runs.list() if r.task in DEPENDENTS]
            return runs if len(runs) == len(DEPENDENTS) and all(
                r.status.finished for r in runs) else None

        runs = await wait_for(all_done, 90, "the dependents' rebuilds")
        print(f"{len(runs)} rebuilds on two engines in {time.monotonic() - started:.1f}s")
        assert sorted(r.task for r in runs) == sorted(DEPENDENTS), "each exactly once"
        assert all(r.status is RunStatus.SUCCEEDED for r in runs), [r.error for r in runs]
        assert {r.engine for r in runs} == {"one", "two"}, "spread over both engines"
        sampler.cancel()
        assert most_on_one == 1, "one slot on engine one"
        for run in runs:
            patched = await asyncio.to_thread(base_images.read_file, run.outputs[0].image,
                                              "/etc/patch")
            assert patched == "fixed\n"
        listed = await asyncio.to_thread(cli, url, "task", "list-runs", "--top", "50",
                                         "-o", "json")
        assert {r["task"]: r["engine"] for r in listed} == {r.task: r.engine for r in runs}
        shown = await asyncio.to_thread(cli, url, "task", "show-run", "--run-id", runs[0].id)
        assert shown["engine"] == runs[0].engine

        # A task file's run: its network, workspace volume and containers on its engine.
        steps_run = (await daemon.services.run_task("steps", {}))["id"]

        async def steps_done():
            run = await daemon.store.runs.get(steps_run)
            return run if run.status.finished else None

        run = await wait_for(steps_done, 60, "the task file's run")
        assert run.status is RunStatus.SUCCEEDED and run.engine in ("one", "two"), run.error
        log = (tmp_path / "state" / "logs" / f"{steps_run}.log").read_text()
        assert "hello from the workspace" in log

        # An engine stopped mid-build: its run fails naming it, and runs again on the other.
        first = (await daemon.services.run_task("slow", {}))["id"]

        async def building():
            run = await daemon.store.runs.get(first)
            log = (tmp_path / "state" / "logs" / f"{first}.log")
            return run if run.engine and log.exists() and "RUN sleep 6" in log.read_text() \
                else None

        run = await wait_for(building, 60, "the slow run's build step")
        lost, other = (one, two) if run.engine == "one" else (two, one)
        daemon.pool.down_recheck_seconds = 0.5  # back sooner than the default's 2 s, 4 s...
        stopped = time.monotonic()
        await asyncio.to_thread(lost.stop)

        async def retried():
            runs = await daemon.store.runs.list(task="slow")
            rerun = next((r for r in runs if r.retry_of == first), None)
            return (await daemon.store.runs.get(first), rerun) \
                if rerun is not None and rerun.status.finished else None

        failed, rerun = await wait_for(retried, 90, "the slow run's re-run")
        print(f"engine stopped mid-build: re-run done {time.monotonic() - stopped:.1f}s later")
        assert failed.status is RunStatus.FAILED and failed.engine == lost.name
        assert f"the build engine {lost.name} stopped answering" in failed.error
        log = (tmp_path / "state" / "logs" / f"{first}.log").read_text()
        assert f"the build engine {lost.name} stopped answering" in log
        assert rerun.status is RunStatus.SUCCEEDED and rerun.engine == other.name, rerun.error
        assert len(await daemon.store.runs.list(task="slow")) == 2, "queued again once"

        health = await get(f"{url}/healthz")
        assert health["status"] == "degraded" and health["engine"] == "ok"
        assert health["engines"][lost.name]["state"] == "down"
        assert health["engines"][other.name] == {
            "state": "up", "runs": 0, "max_concurrent_runs": 1 if other is one else 2,
            "platforms": ["linux/amd64"]}
        metrics = await get(f"{url}/metrics", text=True)
        assert engine_metric(metrics, "basewatch_engine_up", lost.name) == 0
        assert engine_metric(metrics, "basewatch_engine_up", other.name) == 1
        assert engine_metric(metrics, "basewatch_engine_runs", other.name) == 0

        # Restarted: back in the pool once it answers.
        await asyncio.to_thread(lost.start)
        restarted = time.monotonic()

        async def back():
            health = await get(f"{url}/healthz")
            return health if health["engines"][lost.name]["state"] == "up" else None

        health = await wait_for(back, 30, f"engine {lost.name} back up")
        print(f"engine {lost.name} up again {time.monotonic() - restarted:.1f}s after it "
              "answered")
        assert health["status"] == "ok"
        metrics = await get(f"{url}/metrics", text=True)
        assert engine_metric(metrics, "basewatch_engine_up", lost.name) == 1
    finally:
        await daemon.stop()


@pytest.fixture
def ssh_engine(tmp_path, docker_host, monkeypatch):
    """The session's engine behind an sshd on loopback: ssh://root@127.0.0.1:PORT, with a key
    and a known_hosts entry in a HOME of the test's own, as paramiko reads them."""
    folder = tmp_path / "sshd"
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    folder.mkdir()
    for key in (folder / "host_key", home / ".ssh" / "id_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
    port = stack.free_port()
    host_key = (folder / "host_key.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} "
                                               f"{host_key[1]}\n")
    (folder / "authorized_keys").write_text((home / ".ssh" / "id_ed25519.pub").read_text())
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        # `docker system dial-stdio` on the engine's host talks to the engine DOCKER_HOST names.
        f"SetEnv DOCKER_HOST={docker_host}\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    with open(folder / "sshd.log", "ab") as log:
        sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(folder / "sshd_config")],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    try:
        stack._wait(lambda: _accepts(port), f"sshd (log: {folder / 'sshd.log'})", sshd)
        yield f"ssh://root@127.0.0.1:{port}"
    finally:
        sshd.terminate()
        sshd.wait(10)


def _accepts(port: int) -> bool:
    import socket
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_an_engine_over_ssh(tmp_path, registry, base_images, ssh_engine):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    config = Config(state_dir=tmp_path / "state", listen=f"127.0.0.1:{stack.free_port()}",
                    poll_interval=3600, registries=[RegistrySettings(host=reg)],
                    tasks=[task(tmp_path, "viassh", f"FROM {reg}/base:1\nRUN echo ssh > /via\n",
                                f"{reg}/viassh:latest")],
                    engines=[EngineSettings(name="remote", host=ssh_engine)])
    daemon = Daemon(config)
    await daemon.start()
    try:
        assert daemon.pool.states()["remote"]["state"] == "up", daemon.pool.states()
        run_id = (await daemon.services.run_task("viassh", {}))["id"]

        async def done():
            run = await daemon.store.runs.get(run_id)
            return run if run.status.finished else None

        run = await wait_for(done, 60, "the run over ssh")
        assert run.status is RunStatus.SUCCEEDED and run.engine == "remote", run.error
        via = await asyncio.to_thread(base_images.read_file, run.outputs[0].image, "/via")
        assert via == "ssh\n"
    finally:
        await daemon.stop()
