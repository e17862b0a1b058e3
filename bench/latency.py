"""Time from a base push to its dependent's run starting: with notifications, and polling only.

    python3 bench/latency.py [--samples 10]

A real registry (notifications pointed at the daemon), a real engine, a daemon in this process.
Each sample pushes a new digest of the base over the registry API (two blobs and the manifest, a
few milliseconds), then reads the run's start time from the store: the figure is from the start
of the push to the start of the run. With notifications the poll interval is an hour, so only the notification
can start the run; polling only uses a 1 s interval and no notifications.
Goal: median under 1 s with notifications.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import stack  # noqa: E402
from basewatch.config import (Config, NotificationSettings, RegistrySettings,  # noqa: E402
                              TaskSettings)
from basewatch.daemon import Daemon  # noqa: E402
from tests.support.oci import ImagePusher  # noqa: E402

GOAL_SECONDS = 1.0
TOKEN = "bench-latency-token"


async def measure(mode: str, samples: int, workdir: Path, docker_host: str) -> list[float]:
    port = stack.free_port()
    notify = mode == "notifications"
    registry = stack.Registry(
        workdir / f"registry-{mode}", stack.free_port(),
        notify_url=f"http://127.0.0.1:{port}/webhooks/registry" if notify else None,
        notify_headers={"Authorization": [f"Bearer {TOKEN}"]}).start()
    reg = registry.address
    context = workdir / f"app-{mode}"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {reg}/base:1\nLABEL bench=latency\n")
    os.environ["BENCH_NOTIFY_TOKEN"] = TOKEN
    config = Config(
        state_dir=workdir / f"state-{mode}", listen=f"127.0.0.1:{port}",
        poll_interval=3600 if notify else 1, registries=[RegistrySettings(host=reg)],
        notifications=NotificationSettings(token_env="BENCH_NOTIFY_TOKEN") if notify else None,
        tasks=[TaskSettings(name="app", context=context, image=[f"{reg}/app:latest"])])
    latencies = []
    async with aiohttp.ClientSession() as session:
        pusher = ImagePusher(session, reg)
        await pusher.push_image("base", "1", content="sample 0")
        daemon = Daemon(config, docker_host)
        await daemon.start()
        try:
            # Sample 0 warms up: the registry's notification sink starts in back-off from the
            # deliveries it could not make before the daemon listened.
            for sample in range(samples + 1):
                pushing = time.time()
                await pusher.push_image("base", "1", content=f"sample {sample + 1}")
                run = await wait_for_run(daemon, sample + 1)
                latency = run.started_at.timestamp() - pushing
                print(f"  {mode} {'warm-up' if sample == 0 else f'sample {sample}'}: "
                      f"{run.id} started {latency:.3f} s after the push began", flush=True)
                if sample:
                    latencies.append(latency)
                await wait_finished(daemon, run.id)
        finally:
            await daemon.stop()
            registry.stop()
    return latencies


async def wait_for_run(daemon: Daemon, count: int, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = await daemon.store.runs.list(task="app", top=count)  # newest first
        if len(runs) >= count and runs[0].started_at is not None:
            return runs[0]
        await asyncio.sleep(0.01)
    raise SystemExit(f"bench: run {count} did not start within {timeout:.0f}s")


async def wait_finished(daemon: Daemon, run_id: str) -> None:
    while not (await daemon.store.runs.get(run_id)).status.finished:
        await asyncio.sleep(0.05)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp, \
            stack.engine_for_session() as engine:
        for mode in ("notifications", "polling"):
            latencies = asyncio.run(measure(mode, args.samples, Path(tmp), engine.docker_host))
            results[mode] = latencies
            print(f"{mode:>13}: {len(latencies)} samples, median "
                  f"{statistics.median(latencies):.3f} s, p95 {p95(latencies):.3f} s, "
                  f"min {min(latencies):.3f} s, max {max(latencies):.3f} s", flush=True)
    median = statistics.median(results["notifications"])
    verdict = "PASS" if median < GOAL_SECONDS else "FAIL"
    print(f"summary: push-to-run-start median with notifications: {median:.3f} s "
          f"(polling only, 1 s interval: {statistics.median(results['polling']):.3f} s); "
          f"goal: < {GOAL_SECONDS:.0f} s; verdict: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
