"""One base with 1,000 dependent tasks: from the digest change to all 1,000 runs queued.

    python3 bench/fanout.py [--tasks 1000] [--store sqlite|postgres]

A real `basewatch serve` process with N tasks in its config (all FROM the same base in a real
local registry), polling every second. A new digest of the base is pushed; the figure is the
time between the daemon's "changed" log line and its "queued" log line (one transaction queues
them all), read from the daemon's own timestamps. A long settle window keeps the runs queued, so
no build starts during the measurement. Peak memory is the daemon's VmHWM. `--store postgres`
keeps the daemon's state on a PostgreSQL server started for the run (scripts/stack.py).
Goal: under 1 s, under 200 MiB.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
# The interpreter running this script, on this checkout: not a hard-coded virtual environment.
BASEWATCH = [sys.executable, "-m", "basewatch"]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import stack  # noqa: E402
from tests.support.oci import ImagePusher  # noqa: E402

GOAL_SECONDS, GOAL_MIB = 1.0, 200
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


async def push_base(address: str, content: str) -> None:
    async with aiohttp.ClientSession() as session:
        await ImagePusher(session, address).push_image("base", "1", content=content)


def write_config(workdir: Path, registry: str, tasks: int, port: int,
                 database: bool = False) -> Path:
    context = workdir / "app"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {registry}/base:1\n")
    # log_format text: wait_for_fanout reads the text lines' timestamps from the log file.
    lines = [f"state_dir: {workdir / 'state'}", f"listen: 127.0.0.1:{port}", "log_format: text",
             "poll_interval: 1s", "settle_window: 10m", "registries:",
             f"  - host: {registry}", "tasks:"]
    if database:
        lines[:0] = ["database: {url_env: BASEWATCH_DATABASE_URL}"]
    for n in range(tasks):
        lines.append(f"  - {{name: app-{n:04d}, context: {context}, "
                     f"image: {registry}/app-{n:04d}:latest}}")
    path = workdir / "basewatch.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def stamp(line: str) -> datetime:
    return datetime.strptime(STAMP.match(line)[1], "%Y-%m-%d %H:%M:%S,%f")


def peak_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    postgres = None
    with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp:
        workdir = Path(tmp)
        registry = stack.Registry(workdir / "registry", stack.free_port()).start()
        port = stack.free_port()
        database_env = {}
        try:
            if args.store == "postgres":
                # A folder of its own: the server runs as the postgres user, who cannot enter
                # this one (0700, root's).
                postgres = stack.Postgres(Path(tempfile.mkdtemp(prefix="basewatch-bench-pg-")),
                                          stack.free_port()).start()
                database_env = {"BASEWATCH_DATABASE_URL": postgres.url()}
            asyncio.run(push_base(registry.address, "before"))
            config = write_config(workdir, registry.address, args.tasks, port,
                                  database=postgres is not None)
            # The engine is never used: the runs stay queued behind the settle window.
            env = dict(os.environ, PYTHONPATH=str(REPO),
                       DOCKER_HOST=f"unix://{workdir}/no-engine.sock", **database_env)
            log_path = workdir / "daemon.log"
            with open(log_path, "w") as log_file:
                daemon = subprocess.Popen(
                    [*BASEWATCH, "serve", "--config", str(config)],
                    env=env, stdout=log_file, stderr=subprocess.STDOUT)
            try:
                started = time.monotonic()
                try:
                    stack.daemon_health(f"http://127.0.0.1:{port}", daemon, timeout=300)
                except RuntimeError as exc:
                    raise SystemExit(f"bench: {exc}") from None
                print(f"daemon up with {args.tasks} tasks in {time.monotonic() - started:.1f} s",
                      flush=True)
                asyncio.run(push_base(registry.address, "after"))
                changed, queued = wait_for_fanout(log_path, daemon)
                seconds = (stamp(queued) - stamp(changed)).total_seconds()
                count = int(re.search(r"queued (\d+) runs", queued)[1]) \
                    if "runs" in queued else len(queued.split("queued ")[1].split(", "))
                memory = peak_mib(daemon.pid)
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
        finally:
            registry.stop()
            if postgres is not None:
                postgres.stop()
                shutil.rmtree(postgres.root, ignore_errors=True)
    print(f"store: {args.store}", flush=True)
    print(f"fan-out: {count} runs queued {seconds:.3f} s after the change was seen; "
          f"daemon peak memory {memory:.0f} MiB", flush=True)
    verdict = "PASS" if count == args.tasks and seconds < GOAL_SECONDS and memory < GOAL_MIB \
        else "FAIL"
    print(f"summary: {count} runs queued in {seconds:.3f} s, peak {memory:.0f} MiB; goal: "
          f"{args.tasks} in < {GOAL_SECONDS:.0f} s and < {GOAL_MIB} MiB; verdict: {verdict}")
    return 0


def wait_for_fanout(log_path: Path, daemon: subprocess.Popen,
                    timeout: float = 120) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = log_path.read_text().splitlines()
        changed = next((l for l in lines if "digest_watch" in l and " changed: " in l), None)
        queued = next((l for l in lines if "base_image" in l and " queued " in l), None)
        if changed and queued:
            return changed, queued
        if daemon.poll() is not None:
            raise SystemExit(f"bench: the daemon exited; log: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    raise SystemExit("bench: no fan-out within the timeout")


if __name__ == "__main__":
    sys.exit(main())
