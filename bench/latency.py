"""Push -> run started with 10,000 tasks registered and 100 bases pushed at once.

    python3 bench/latency.py [--bases 1000] [--dependents 10] [--pushed 100]
                             [--store sqlite|postgres|both] [--poll-interval 1]

A real `basewatch serve` process with 10,000 config tasks: 1,000 bases in a real local registry,
10 tasks FROM each (a context of its own per task, `FROM base` and nothing else), its state in
a fresh store (bench/stores.py: a SQLite file, or a PostgreSQL server of the bench's own).
Once the daemon has registered them all, one base is pushed alone to warm the path up (its
runs are left out), then 100 other bases get a new digest each, pushed at once (100 concurrent
pushes over the registry API: two blobs and the manifest each). Every run those pushes trigger
(100 x 10) gives one figure, from the moment the registry answered its base's manifest PUT
(the new digest exists; nothing could see it sooner) to the moment the run started, defined
below; the time from the push's first request is printed beside it. Two modes, each on each
store: with registry notifications (the registry POSTs its events to the daemon's
/webhooks/registry; the poll interval is an hour, so only a notification can start a run),
and polling only (no notifications, every base polled every --poll-interval seconds).

"Run started" is the moment the daemon records the run: the `queued_at` the store writes in
the one transaction that records the base's new digest and inserts its dependents' runs
(basewatch/store/runs.py: record_change_and_queue -> insert_runs; the stamp is taken inside
that transaction, just before its commit). From then on the run is durable and in the run
queue. When a builder takes it (`mark_started`: status Running, `started_at`) depends on how
many builds are running (max_concurrent_runs, 2 by default) and how long they take, not on how
soon the push was noticed: 1,000 runs through two slots is a build-throughput figure, not a
latency. So nothing is built: a ten-minute settle window keeps every run queued, and the daemon
has no engine. The figure is read from the daemon's own store after the runs are all there.
Goal: p99 under 0.5 s with notifications, on each store.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import statistics
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
from poll import push_bases  # noqa: E402
from stores import BenchStore, add_store_argument, bench_store, chosen, load_average, stop_daemon  # noqa: E402

from tests.support.oci import ImagePusher  # noqa: E402

GOAL_P99_SECONDS, GOAL_TASKS, GOAL_PUSHED = 0.5, 10000, 100
TOKEN_ENV, TOKEN = "BENCH_NOTIFY_TOKEN", "bench-latency-token"
MODES = ("notifications", "polling")


def base_name(n: int) -> str:
    """The nth base's repository, as poll.push_bases pushes them (tag 1)."""
    return f"bench/base-{n:05d}"


def write_config(workdir: Path, store: BenchStore, registry: str, port: int, mode: str,
                 bases: int, dependents: int, poll_interval: float) -> Path:
    """`bases` x `dependents` tasks; task n is FROM base n % bases."""
    notify = mode == "notifications"
    lines = [*store.config_lines(), f"state_dir: {store.state_dir}",
             f"listen: 127.0.0.1:{port}", "log_format: text",
             f"poll_interval: {'1h' if notify else f'{poll_interval:g}s'}",
             "settle_window: 10m", "registries:", f"  - host: {registry}"]
    if notify:
        lines += ["notifications:", f"  token_env: {TOKEN_ENV}"]
    lines.append("tasks:")
    for n in range(bases * dependents):
        context = workdir / "contexts" / f"task-{n:05d}"
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(f"FROM {registry}/{base_name(n % bases)}:1\n")
        lines.append(f"  - {{name: app-{n:05d}, context: {context}, "
                     f"image: {registry}/app-{n:05d}:latest}}")
    path = workdir / "basewatch.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def push_at_once(address: str, bases: list[int], content: str) -> dict[int, tuple]:
    """A new digest for each base, all pushed concurrently; per base, (began, answered) as
    wall-clock seconds: the push's first request, and the registry's answer to its manifest."""
    times: dict[int, tuple] = {}
    connector = aiohttp.TCPConnector(limit=len(bases))
    async with aiohttp.ClientSession(connector=connector) as session:
        pusher = ImagePusher(session, address)

        async def push(n: int) -> None:
            began = time.time()
            await pusher.push_image(base_name(n), "1", content=f"{content} {n}")
            times[n] = (began, time.time())

        await asyncio.gather(*(push(n) for n in bases))
    return times


async def queued_runs(store: BenchStore) -> list[tuple[str, str]]:
    """(task, queued_at) of every run in the daemon's store."""
    return await store.rows("SELECT task, queued_at FROM runs")


async def wait_for_runs(store: BenchStore, count: int, daemon: subprocess.Popen,
                        timeout: float) -> list[tuple[str, str]]:
    """The runs, once there are `count` (or what there is when the timeout ends)."""
    deadline = time.monotonic() + timeout
    while True:
        (total,), = await store.rows("SELECT count(*) FROM runs")
        if total >= count or time.monotonic() > deadline:
            return await queued_runs(store)
        if daemon.poll() is not None:
            raise SystemExit(f"bench: the daemon exited with code {daemon.returncode}")
        await asyncio.sleep(0.25)


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def measure(kind: str, mode: str, workdir: Path, seed: Path, args) -> dict:
    """One daemon, on a fresh store and a copy of the seeded registry: the burst's figures."""
    port = stack.free_port()
    root = workdir / "registry"
    shutil.copytree(seed / "data", root / "data")
    notify_url = f"http://127.0.0.1:{port}/webhooks/registry" if mode == "notifications" else None
    registry = stack.Registry(root, stack.free_port(), notify_url=notify_url,
                              notify_headers={"Authorization": [f"Bearer {TOKEN}"]}).start()
    try:
        with bench_store(kind, workdir) as store:
            config = write_config(workdir, store, registry.address, port, mode, args.bases,
                                  args.dependents, args.poll_interval)
            env = dict(os.environ, PYTHONPATH=str(REPO), **{TOKEN_ENV: TOKEN},
                       DOCKER_HOST=f"unix://{workdir}/no-engine.sock", **store.env())
            log_path = workdir / "daemon.log"
            with open(log_path, "w") as log_file:
                daemon = subprocess.Popen([*BASEWATCH, "serve", "--config", str(config)],
                                          env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                          cwd=workdir)
            try:
                started = time.monotonic()
                try:  # 200 once every config task is registered
                    stack.daemon_health(f"http://127.0.0.1:{port}", daemon, timeout=600)
                except RuntimeError as exc:
                    raise SystemExit(f"bench: {exc}; log: {log_path.read_text()[-2000:]}") \
                        from None
                print(f"  {kind}, {mode}: {args.bases * args.dependents} tasks registered "
                      f"{time.monotonic() - started:.1f} s after the spawn", flush=True)
                return asyncio.run(burst(store, registry.address, daemon, args))
            finally:
                stop_daemon(daemon)
    finally:
        registry.stop()


async def burst(store: BenchStore, registry: str, daemon: subprocess.Popen, args) -> dict:
    warm_up = args.bases - 1  # never among the bases pushed at once
    await push_at_once(registry, [warm_up], "warm-up")
    warmed = await wait_for_runs(store, args.dependents, daemon, timeout=120)
    if len(warmed) < args.dependents:
        raise SystemExit(f"bench: the warm-up push queued {len(warmed)} of "
                         f"{args.dependents} runs within 120 s")
    pushed = list(range(args.pushed))
    expected = args.pushed * args.dependents
    times = await push_at_once(registry, pushed, "burst")
    runs = await wait_for_runs(store, len(warmed) + expected, daemon, timeout=300)
    from_answer, from_start = [], []
    for task, queued_at in runs:
        base = int(task.removeprefix("app-")) % args.bases
        if base == warm_up:
            continue
        began, answered = times[base]
        queued = datetime.fromisoformat(queued_at).timestamp()
        from_answer.append(queued - answered)
        from_start.append(queued - began)
    if not from_answer:
        raise SystemExit("bench: the pushes started no run within 300 s")
    pushes = [answered - began for began, answered in times.values()]
    return {"runs": len(from_answer), "expected": expected,
            "median": statistics.median(from_answer), "p99": nearest_rank(from_answer, 0.99),
            "max": max(from_answer), "min": min(from_answer),
            "p99_from_start": nearest_rank(from_start, 0.99),
            "push_median": statistics.median(pushes), "push_max": max(pushes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", type=int, default=1000)
    parser.add_argument("--dependents", type=int, default=10, help="tasks FROM each base")
    parser.add_argument("--pushed", type=int, default=100, help="bases pushed at once")
    add_store_argument(parser)
    parser.add_argument("--poll-interval", type=float, default=1.0,
                        help="seconds between two polls of a base, in the polling-only mode")
    args = parser.parse_args()
    if not 0 < args.pushed < args.bases:
        parser.error("--pushed must be between 1 and --bases - 1 (the last base warms up)")
    results: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp:
        workdir = Path(tmp)
        # The bases are pushed once, with no notifications going anywhere; each daemon gets a
        # copy of that registry's storage, so none starts with a backlog of events to take.
        seed = stack.Registry(workdir / "seed", stack.free_port()).start()
        try:
            started = time.monotonic()
            asyncio.run(push_bases(seed.address, args.bases))
        finally:
            seed.stop()
        print(f"{args.bases} bases pushed in {time.monotonic() - started:.1f} s; "
              f"{args.dependents} tasks FROM each", flush=True)
        for kind in chosen(args.store):
            for mode in MODES:
                run_dir = workdir / f"{kind}-{mode}"
                run_dir.mkdir()
                result = results[(kind, mode)] = measure(kind, mode, run_dir, seed.root, args)
                print(f"  {kind}, {mode}: {result['runs']} of {result['expected']} runs "
                      f"started (queued); from the manifest's answer: median "
                      f"{result['median']:.3f} s, p99 {result['p99']:.3f} s, min "
                      f"{result['min']:.3f} s, max {result['max']:.3f} s (p99 from the push's "
                      f"first request "
                      f"{result['p99_from_start']:.3f} s; a push took {result['push_median']:.3f}"
                      f" s median, {result['push_max']:.3f} s at most); {load_average()}",
                      flush=True)
    notified = {kind: r for (kind, mode), r in results.items() if mode == "notifications"}
    met = args.bases * args.dependents >= GOAL_TASKS and args.pushed >= GOAL_PUSHED and all(
        r["runs"] == r["expected"] and r["p99"] < GOAL_P99_SECONDS for r in notified.values())
    figures = ", ".join(
        f"{kind} median {r['median']:.3f} s, p99 {r['p99']:.3f} s"
        + (f" ({r['runs']} of {r['expected']} runs)" if r["runs"] != r["expected"] else "")
        + (f" (polling only: p99 {results[(kind, 'polling')]['p99']:.3f} s)"
           if (kind, "polling") in results else "")
        for kind, r in notified.items())
    print(f"summary: push -> run started, {args.pushed} of {args.bases} bases pushed at once, "
          f"{args.bases * args.dependents} tasks, with notifications: {figures}; goal: p99 < "
          f"{GOAL_P99_SECONDS} s with notifications on each store, {GOAL_TASKS} tasks, "
          f"{GOAL_PUSHED} pushed; "
          f"verdict: {'met' if met else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
