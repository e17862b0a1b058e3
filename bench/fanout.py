"""One base with 10,000 dependent tasks: from the digest change to all 10,000 runs queued.

    python3 bench/fanout.py [--tasks 10000] [--store sqlite|postgres|both]

A real `basewatch serve` process with N tasks in its config (all FROM the same base in a real
local registry), polling every second, its state in a fresh store (bench/stores.py: a SQLite
file, or a PostgreSQL server of the bench's own); with `--store both`, once on each. A new
digest of the base is pushed; the figure is the time between the daemon's "changed" log line
and its "queued" log line (one transaction queues them all), read from the daemon's own
timestamps. A long settle window keeps the runs queued, so no build starts during the
measurement. Peak memory is the daemon's VmHWM (start-up and registration of the N tasks
included: the most the process ever held).
Goal: on each store, under 1 s and under 300 MiB.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
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
sys.path[:0] = [str(REPO), str(REPO / "scripts"), str(REPO / "bench")]

import stack  # noqa: E402
from stores import BenchStore, add_store_argument, bench_store, chosen, load_average  # noqa: E402

from tests.support.oci import ImagePusher  # noqa: E402

GOAL_SECONDS, GOAL_MIB, GOAL_TASKS = 1.0, 300, 10000
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


async def push_base(address: str, content: str) -> None:
    async with aiohttp.ClientSession() as session:
        await ImagePusher(session, address).push_image("base", "1", content=content)


def write_config(workdir: Path, store: BenchStore, registry: str, tasks: int, port: int) -> Path:
    context = workdir / "app"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {registry}/base:1\n")
    # log_format text: wait_for_fanout reads the text lines' timestamps from the log file.
    lines = [*store.config_lines(), f"state_dir: {store.state_dir}",
             f"listen: 127.0.0.1:{port}", "log_format: text", "poll_interval: 1s",
             "settle_window: 10m", "registries:", f"  - host: {registry}", "tasks:"]
    for n in range(tasks):
        lines.append(f"  - {{name: app-{n:05d}, context: {context}, "
                     f"image: {registry}/app-{n:05d}:latest}}")
    path = workdir / "basewatch.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def stamp(line: str) -> datetime:
    return datetime.strptime(STAMP.match(line)[1], "%Y-%m-%d %H:%M:%S,%f")


def peak_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024


def measure(kind: str, workdir: Path, tasks: int) -> dict:
    """One daemon on a fresh store of `kind` and a fresh registry: the fan-out's figures."""
    with bench_store(kind, workdir) as store:
        registry = stack.Registry(workdir / "registry", stack.free_port()).start()
        try:
            asyncio.run(push_base(registry.address, "before"))
            port = stack.free_port()
            config = write_config(workdir, store, registry.address, tasks, port)
            # The engine is never used: the runs stay queued behind the settle window.
            env = dict(os.environ, PYTHONPATH=str(REPO),
                       DOCKER_HOST=f"unix://{workdir}/no-engine.sock", **store.env())
            log_path = workdir / "daemon.log"
            with open(log_path, "w") as log_file:
                daemon = subprocess.Popen(
                    [*BASEWATCH, "serve", "--config", str(config)],
                    env=env, stdout=log_file, stderr=subprocess.STDOUT)
            try:
                started = time.monotonic()
                try:  # 200 once every config task is registered
                    stack.daemon_health(f"http://127.0.0.1:{port}", daemon, timeout=300)
                except RuntimeError as exc:
                    raise SystemExit(f"bench: {exc}") from None
                registered = time.monotonic() - started
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
    return {"count": count, "seconds": seconds, "memory": memory, "registered": registered}


def wait_for_fanout(log_path: Path, daemon: subprocess.Popen,
                    timeout: float = 120) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = log_path.read_text().splitlines()
        changed = next((line for line in lines
                        if "digest_watch" in line and " changed: " in line), None)
        queued = next((line for line in lines
                       if "base_image" in line and " queued " in line), None)
        if changed and queued:
            return changed, queued
        if daemon.poll() is not None:
            raise SystemExit(f"bench: the daemon exited; log: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    raise SystemExit("bench: no fan-out within the timeout")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=GOAL_TASKS)
    add_store_argument(parser)
    args = parser.parse_args()
    results: dict[str, dict] = {}
    for kind in chosen(args.store):
        with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp:
            result = results[kind] = measure(kind, Path(tmp), args.tasks)
        print(f"fan-out ({kind}): {result['count']} runs queued {result['seconds']:.3f} s after "
              f"the change was seen; daemon peak memory {result['memory']:.0f} MiB (its "
              f"{args.tasks} tasks registered {result['registered']:.1f} s after the spawn); "
              f"{load_average()}", flush=True)
    met = args.tasks >= GOAL_TASKS and all(
        r["count"] == args.tasks and r["seconds"] < GOAL_SECONDS and r["memory"] < GOAL_MIB
        for r in results.values())
    figures = ", ".join(f"{kind} {r['count']} runs in {r['seconds']:.3f} s, peak "
                        f"{r['memory']:.0f} MiB" for kind, r in results.items())
    print(f"summary: fan-out of one base: {figures}; goal: {GOAL_TASKS} in < "
          f"{GOAL_SECONDS:.0f} s and < {GOAL_MIB} MiB on each store; "
          f"verdict: {'met' if met else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
