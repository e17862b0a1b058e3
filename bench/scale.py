"""Build throughput on one engine against two: 40 waiting builds, one pool engine, then two.

    python3 bench/scale.py [--tasks 40] [--sleep 2]

A real registry and two real Docker Engines (dockerd on loopback TCP with TLS certificates made
here, as tests/e2e/test_engine_pool.py starts them), a busybox base pushed to the registry and
pulled onto both engines. Two cases, each a fresh `basewatch serve` (its own state) with the
same N config tasks, each `FROM base` + `RUN sleep S` (plus its own name, so that no build is a
cache hit of another's):
- one engine in `engines:` with max_concurrent_runs 2;
- two engines in `engines:` with max_concurrent_runs 2 each.
In each case a patched base is pushed once the daemon has recorded the base's digest (it polls
every second); the figure is the time from the end of that push to all N runs Succeeded, as
runs per minute. The builds are dominated by waiting, so the engines' CPU is not what limits
them: twice the slots should give nearly twice the throughput.
Goal: two engines / one engine throughput >= 1.8.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The interpreter running this script, on this checkout: not a hard-coded virtual environment.
BASEWATCH = [sys.executable, "-m", "basewatch"]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import docker  # noqa: E402

import stack  # noqa: E402
from busybox_images import BaseImages  # noqa: E402
from tests.support.engine_tls import EngineTLSFiles, make_engine_tls  # noqa: E402

GOAL = 1.8
SLOTS = 2
TOKEN = "bench-scale-token"
# Loopback only, never through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class PoolEngine:
    """One dockerd of the pool: loopback TCP with --tlsverify, and a socket of its own."""

    name: str
    root: Path
    port: int
    tls: EngineTLSFiles
    engine: stack.Engine | None = None

    def start(self) -> None:
        self.engine = stack.Engine.start(self.root, tcp=f"127.0.0.1:{self.port}",
                                         tls=self.tls.server)

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
        stack.Engine(f"tcp://127.0.0.1:{self.port}").stop(remove=self.root)

    def config(self) -> dict:
        return {"name": self.name, "host": f"tcp://127.0.0.1:{self.port}",
                "max_concurrent_runs": SLOTS,
                "tls": {"ca": str(self.tls.ca), "cert": str(self.tls.client_cert),
                        "key": str(self.tls.client_key)}}


@dataclass
class Case:
    label: str
    engines: int
    seconds: float
    per_engine: Counter
    digest: str  # the patched base's, which the next case starts from
    build_seconds: float  # the runs' median duration: the sleep plus what each build costs

    @property
    def per_minute(self) -> float:
        return sum(self.per_engine.values()) * 60 / self.seconds

    def report(self) -> str:
        spread = ", ".join(f"{name}: {count}" for name, count in sorted(self.per_engine.items()))
        return (f"{self.label}: {sum(self.per_engine.values())} runs Succeeded in "
                f"{self.seconds:.1f} s after the push = {self.per_minute:.1f} runs/min "
                f"(runs per engine: {spread}; median run {self.build_seconds:.2f} s)")


def api(url: str, path: str):
    request = urllib.request.Request(f"{url}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with _OPENER.open(request, timeout=10) as response:
            return json.load(response)
    except OSError as exc:
        raise SystemExit(f"bench: {url}{path}: {exc}") from None


def wait(predicate, what: str, daemon: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if daemon.poll() is not None:
            raise SystemExit(f"bench: the daemon exited (code {daemon.returncode}) while "
                             f"waiting for {what}")
        time.sleep(0.2)
    raise SystemExit(f"bench: no {what} within {timeout:.0f} s")


def write_tasks(workdir: Path, registry: str, tasks: int, sleep: float) -> list[dict]:
    entries = []
    for n in range(tasks):
        name = f"app-{n:02d}"
        context = workdir / "apps" / name
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(
            f"FROM {registry}/base:1\nRUN sleep {sleep} && echo {name} > /name\n")
        entries.append({"name": name, "context": str(context),
                        "image": f"{registry}/{name}:latest"})
    return entries


def run_case(label: str, workdir: Path, registry: str, pool: list[PoolEngine],
             tasks: list[dict], images: BaseImages, current: str, patch: str) -> Case:
    """A fresh daemon on `pool`; a patched base pushed; its N rebuilds timed."""
    folder = workdir / label.replace(" ", "-")
    port = stack.free_port()
    url = f"http://127.0.0.1:{port}"
    config = folder / "basewatch.yml"
    folder.mkdir()
    # JSON is YAML.
    config.write_text(json.dumps({
        "state_dir": str(folder / "state"), "listen": f"127.0.0.1:{port}",
        "poll_interval": "1s", "api_token_env": "BENCH_TOKEN",
        "registries": [{"host": registry}], "engines": [e.config() for e in pool],
        "tasks": tasks}))
    env = dict(os.environ, PYTHONPATH=str(REPO), BENCH_TOKEN=TOKEN)
    base = f"{registry}/base:1"
    with open(folder / "daemon.log", "w") as log_file:
        # A session of its own: a Ctrl-C reaches only the bench, which then stops the daemon.
        daemon = subprocess.Popen([*BASEWATCH, "serve", "--config", str(config)], env=env,
                                  stdout=log_file, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        try:
            stack.daemon_health(url, daemon)
        except RuntimeError as exc:
            raise SystemExit(f"bench: {exc}") from None

        def ready():
            health = api(url, "/healthz")
            if health["status"] != "ok":
                return None
            graph = api(url, "/api/graph")
            digests = {r["digest"] for r in graph["references"] if r["reference"] == base}
            return digests == {current}

        wait(ready, "registration and the base's digest recorded", daemon, 120)
        patched = images.build(base, {"/etc/release": "1\n", "/etc/patch": patch + "\n"})
        pushed = time.monotonic()

        def all_succeeded():
            runs = api(url, f"/api/runs?top={len(tasks) * 2}")
            failed = [r for r in runs if r["status"] in ("Failed", "Canceled", "TimedOut")]
            if failed:
                raise SystemExit(f"bench: {failed[0]['task']} {failed[0]['status']}: "
                                 f"{failed[0]['error']} (log: {folder / 'daemon.log'})")
            done = [r for r in runs if r["status"] == "Succeeded"]
            return done if len(done) >= len(tasks) else None

        runs = wait(all_succeeded, f"{len(tasks)} runs Succeeded", daemon, 600)
        seconds = time.monotonic() - pushed
        # The daemon's own stamps, as a check on the wall clock: first start to last finish.
        first = min(datetime.fromisoformat(r["started_at"]) for r in runs)
        last = max(datetime.fromisoformat(r["finished_at"]) for r in runs)
        span = (last - first).total_seconds()
        print(f"{label}: first build started to last finished {span:.1f} s", flush=True)
        assert sorted(r["task"] for r in runs) == sorted(t["name"] for t in tasks), \
            "each task rebuilt exactly once"
        return Case(label, len(pool), seconds, Counter(r["engine"] for r in runs), patched,
                    statistics.median(r["duration_seconds"] for r in runs))
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--sleep", type=float, default=2)
    args = parser.parse_args()
    # A `kill` ends the bench like a Ctrl-C: through the finally blocks that stop everything.
    signal.signal(signal.SIGTERM, _interrupted)
    pool: list[PoolEngine] = []
    registry = None
    workdir = Path(tempfile.mkdtemp(prefix="basewatch-bench-"))
    try:
        registry = stack.Registry(workdir / "registry", stack.free_port()).start()
        reg = registry.address
        tls = make_engine_tls(workdir / "tls")
        # Short folders of their own: containerd's sockets live under them.
        pool = [PoolEngine(name, Path(tempfile.mkdtemp(prefix=f"bw-{name}-")),
                           stack.free_port(), tls) for name in ("one", "two")]
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(2) as threads:
            list(threads.map(PoolEngine.start, pool))
        print(f"two TLS engines started in {time.monotonic() - started:.1f} s", flush=True)
        clients = [docker.DockerClient(base_url=e.engine.docker_host, version="auto")
                   for e in pool]
        try:
            images = BaseImages(clients[0], workdir / "images")
            digest = images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
            clients[1].images.pull(f"{reg}/base", tag="1")  # the base on every engine
            tasks = write_tasks(workdir, reg, args.tasks, args.sleep)
            one = run_case("one engine", workdir, reg, pool[:1], tasks, images, digest, "one")
            print(one.report(), flush=True)
            two = run_case("two engines", workdir, reg, pool, tasks, images, one.digest, "two")
            print(two.report(), flush=True)
        finally:
            for client in clients:
                client.close()
    except KeyboardInterrupt:
        print("bench: interrupted; stopping what it started", file=sys.stderr)
        return 130
    finally:
        for engine in pool:
            engine.stop()
        if registry is not None:
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = two.per_minute / one.per_minute
    verdict = "PASS" if ratio >= GOAL else "FAIL"
    print(f"scale: two engines / one engine throughput = {ratio:.2f} (goal >= {GOAL}): "
          f"{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
