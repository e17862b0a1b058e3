"""One full poll cycle over N distinct base references, against a plain HEAD loop in the same run.

    python3 bench/poll.py [--size 10000] [--store sqlite|postgres|both] [--rounds 3]
                          [--concurrency 64]

Pushes N single-platform images (one repository each) to a fresh docker-registry and, for each
store, records them as watched bases in a fresh store (bench/stores.py: a SQLite file, or a
PostgreSQL server of the bench's own) with the digests they were pushed with (as the daemon's
registration records what it reads), so every cycle measured is a steady-state one. Each of
`--rounds` rounds times basewatch's cycle (DigestWatcher.poll_once: read the watched references
from the store, HEAD each, write what it saw back) and a plain HEAD loop (aiohttp, the same
concurrency, the same registry and references, no store, no back-off), in turn, which one goes
first alternating; both have their connections made beforehand. The figure is the ratio of the
two medians (the median of each round's ratio is printed beside it): the machine is shared and
noisy, so only what is measured side by side is compared. Also printed: requests sent,
each side's CPU time in this process (the registry shares the same two cores, so wall time
includes its work too: CPU is the steadier figure of what each costs) and peak memory.
Goal: basewatch's cycle within 1.1x the plain HEAD loop, on each store, at 10,000 references.
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts"), str(REPO / "bench")]

import stack  # noqa: E402
from stores import add_store_argument, bench_store, chosen, load_average  # noqa: E402

from basewatch.models import DependencyKind  # noqa: E402
from basewatch.oci.registry import RegistryClient  # noqa: E402
from basewatch.tasks import Task  # noqa: E402
from basewatch.watcher.digest_watch import DigestWatcher  # noqa: E402
from tests.support.oci import ImagePusher  # noqa: E402

GOAL_RATIO, GOAL_SIZE = 1.1, 10000
BATCH = 1000  # tasks written to the store per transaction while setting up


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def push_bases(address: str, count: int) -> dict[str, str]:
    """`count` bases, one repository each; their references and digests."""
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:
        pusher = ImagePusher(session, address)
        await pusher.push_image("bench/seed", "1")  # later pushes mount its blobs
        pushed = await asyncio.gather(*(pusher.push_image(f"bench/base-{n:05d}", "1")
                                        for n in range(count)))
    return {f"{address}/bench/base-{n:05d}:1": image.digest for n, image in enumerate(pushed)}


MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"))


class HeadLoop:
    """The raw baseline: one HEAD per reference, `concurrency` at a time, on one session."""

    def __init__(self, session: aiohttp.ClientSession, concurrency: int):
        self.session = session
        self.limit = asyncio.Semaphore(concurrency)

    async def head(self, reference: str) -> None:
        host, _, rest = reference.partition("/")
        repository, _, tag = rest.rpartition(":")
        async with self.limit, self.session.head(
                f"http://{host}/v2/{repository}/manifests/{tag}",
                headers={"Accept": MANIFEST_TYPES}) as response:
            assert response.status == 200, response.status
            assert response.headers.get("Docker-Content-Digest")

    async def cycle(self, references: list[str]) -> float:
        """Seconds to HEAD every reference once."""
        started = time.perf_counter()
        await asyncio.gather(*(self.head(r) for r in references))
        return time.perf_counter() - started


async def record_bases(store, digests: dict[str, str], workdir: Path) -> None:
    """One task per reference, FROM it, written in batches with the digest each was pushed
    with, as the daemon's registration records what it reads from the registry."""
    references = list(digests)
    for first in range(0, len(references), BATCH):
        batch = list(enumerate(references[first:first + BATCH], start=first))
        await store.tasks.upsert_many([
            (Task(name=f"app-{n:05d}", context=str(workdir),
                  images=[f"{reference.partition('/')[0]}/app-{n:05d}"]), "config")
            for n, reference in batch])
        await store.graph.replace_many(
            [(f"app-{n:05d}", [(reference, "linux/amd64", DependencyKind.RUNTIME)], ())
             for n, reference in batch],
            {(reference, "linux/amd64"): digests[reference] for _, reference in batch})


async def measure(bench_store_, digests: dict[str, str], workdir: Path, concurrency: int,
                  rounds: int) -> dict:
    references = list(digests)
    store = await bench_store_.open()
    try:
        started = time.perf_counter()
        await record_bases(store, digests, workdir)
        print(f"  {len(references)} tasks recorded in {time.perf_counter() - started:.1f} s",
              flush=True)

        async def no_change(change) -> None:
            raise AssertionError(f"unexpected change during the benchmark: {change}")

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with RegistryClient() as client, \
                aiohttp.ClientSession(connector=connector) as session:
            watcher = DigestWatcher(store.graph, client, no_change, lambda host: 60.0,
                                    concurrency=concurrency)
            baseline = HeadLoop(session, concurrency)
            # Both with their connections made before anything is timed: a pass over a few
            # references each (connections are all there is to warm).
            warm = set(references[:4 * concurrency])
            await watcher.check_references(warm.__contains__)
            await baseline.cycle(list(warm))
            cycles, raws, requests, cpus, raw_cpus = [], [], [], [], []

            async def basewatch_cycle() -> None:
                sent_before = client.requests_sent
                started, cpu_started = time.perf_counter(), cpu_seconds()
                stats = await watcher.poll_once()
                cycles.append(time.perf_counter() - started)
                cpus.append(cpu_seconds() - cpu_started)
                requests.append(client.requests_sent - sent_before)
                assert stats.checked == len(references) and stats.errors == 0 \
                    and stats.changed == 0, stats

            async def baseline_cycle() -> None:
                cpu_started = cpu_seconds()
                raws.append(await baseline.cycle(references))
                raw_cpus.append(cpu_seconds() - cpu_started)

            for round_ in range(1, rounds + 1):
                # Which goes first alternates, so neither always meets the registry's
                # aftermath of the other.
                if round_ % 2:
                    await basewatch_cycle()
                    await baseline_cycle()
                else:
                    await baseline_cycle()
                    await basewatch_cycle()
                print(f"  round {round_}: basewatch {cycles[-1]:.3f} s "
                      f"(CPU {cpus[-1]:.2f} s, {requests[-1]} requests), plain HEAD loop "
                      f"{raws[-1]:.3f} s (CPU {raw_cpus[-1]:.2f} s), ratio "
                      f"{cycles[-1] / raws[-1]:.2f}; {load_average()}",
                      flush=True)
    finally:
        await store.close()
    seconds, raw = statistics.median(cycles), statistics.median(raws)
    return {"references": len(references), "seconds": seconds, "raw_seconds": raw,
            "ratio": seconds / raw, "cpu": statistics.median(cpus),
            "raw_cpu": statistics.median(raw_cpus),
            "paired": statistics.median(c / r for c, r in zip(cycles, raws)),
            "requests": statistics.median(requests), "peak_rss_mib": peak_rss_mib()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=GOAL_SIZE)
    add_store_argument(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--registry-gogc", default="400",
                        help="GOGC of the stand-in registry (Go's default is 100)")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp:
        workdir = Path(tmp)
        # The stand-in registry shares the two cores with basewatch, and at Go's default GOGC
        # its garbage collector costs more CPU than basewatch's whole cycle: that is not what
        # is measured here, so it gets a larger heap target (printed, and settable).
        registry = stack.Registry(workdir / "registry", stack.free_port(),
                                  env={"GOGC": args.registry_gogc}).start()
        print(f"stand-in registry: docker-registry with GOGC={args.registry_gogc}; "
              f"poll concurrency {args.concurrency}; {args.rounds} rounds", flush=True)
        try:
            started = time.perf_counter()
            digests = asyncio.run(push_bases(registry.address, args.size))
            print(f"{args.size} bases pushed in {time.perf_counter() - started:.1f} s",
                  flush=True)
            for kind in chosen(args.store):
                print(f"store: {kind}", flush=True)
                with bench_store(kind, workdir) as store:
                    result = asyncio.run(measure(store, digests, workdir, args.concurrency,
                                                 args.rounds))
                results[kind] = result
                print(f"poll cycle ({kind}): {result['references']} references, median "
                      f"{result['seconds']:.3f} s ({result['references'] / result['seconds']:.0f}"
                      f"/s), basewatch CPU {result['cpu']:.2f} s, {result['requests']:.0f} "
                      f"requests, peak RSS {result['peak_rss_mib']:.0f} MiB; plain HEAD loop "
                      f"median {result['raw_seconds']:.3f} s (CPU {result['raw_cpu']:.2f} s); "
                      f"ratio of the medians "
                      f"{result['ratio']:.2f} (median of the rounds' ratios "
                      f"{result['paired']:.2f})",
                      flush=True)
        finally:
            registry.stop()
    met = args.size >= GOAL_SIZE and all(r["ratio"] <= GOAL_RATIO for r in results.values())
    figures = ", ".join(f"{kind} {r['ratio']:.2f}x ({r['seconds']:.2f} s vs "
                        f"{r['raw_seconds']:.2f} s)" for kind, r in results.items())
    print(f"summary: poll cycle of {args.size} references against a plain HEAD loop: "
          f"{figures}; goal: <= {GOAL_RATIO}x at {GOAL_SIZE} on each store; "
          f"verdict: {'met' if met else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
