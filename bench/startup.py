"""Start-up with many config tasks: time to /healthz answering, and to every task registered.

    python3 bench/startup.py [--sizes 10000] [--store sqlite|postgres|both] [--bases 300]
                             [--tree PATH]

A real `basewatch serve` process with N config tasks (tests/support/config_tasks.py: N
Dockerfiles in contexts of their own, single- and multi-stage, over --bases bases pushed to a
real local registry, so registration reads each base's digest from it), its state in a fresh
store (bench/stores.py: a SQLite file, or a PostgreSQL server of the bench's own, the daemon
creating its schema on the first start); with `--store both`, on each. Timed from the
process's spawn: when /healthz first answers (any status), and when it reports the config
tasks registered (`registration.state: done`; a daemon older than that progress report
answers /healthz only once it has registered them, so its first answer is both). The daemon
has no engine: nothing is built. `--tree` runs another checkout's daemon (the previous code)
on the same config, for a before/after figure in one run. Each is started twice: on a fresh
state (the figure judged), then again on the state it left (a restart: every task stored
already).
Goal: on each store, /healthz within 1 s of the start, 10,000 tasks registered within 10 s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts"), str(REPO / "bench")]

import stack  # noqa: E402
from poll import push_bases  # noqa: E402
from stores import BenchStore, add_store_argument, bench_store, chosen, load_average, stop_daemon  # noqa: E402

from tests.support.config_tasks import write_tasks  # noqa: E402

GOAL_HEALTHZ_SECONDS, GOAL_REGISTERED_SECONDS, GOAL_SIZE = 1.0, 10.0, 10000


def healthz(url: str) -> dict | None:
    """The report, whatever the status (503 while starting); None while nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        return json.load(error)
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user and system, all its threads): what the start
    cost, whatever else the shared machine was doing meanwhile."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(tree: Path, config: Path, store: BenchStore, url: str, workdir: Path,
            timeout: float, profile: Path | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), DOCKER_HOST=f"unix://{workdir}/no-engine.sock",
               **store.env())
    log_path = workdir / "daemon.log"
    with open(log_path, "w") as log_file:
        started = time.monotonic()
        # cwd: `python -m` imports from the current folder before PYTHONPATH.
        profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
        daemon = subprocess.Popen([sys.executable, *profiler, "-m", "basewatch", "serve",
                                   "--config", str(config)], env=env, stdout=log_file,
                                  stderr=subprocess.STDOUT, cwd=workdir)
    try:
        answered = report = None
        slowest = 0.0  # the slowest /healthz answer while registering
        deadline = started + timeout
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                raise SystemExit(f"bench: the daemon exited; log: {log_path.read_text()[-2000:]}")
            asked = time.monotonic()
            report = healthz(url)
            if report is not None:
                answered = answered or time.monotonic() - started
                progress = report.get("registration")
                if progress is None or progress["state"] == "done":
                    break
                slowest = max(slowest, time.monotonic() - asked)
            time.sleep(0.02)
        else:
            raise SystemExit(f"bench: not registered within {timeout:.0f} s")
        return {"healthz": answered, "registered": time.monotonic() - started,
                "cpu": cpu_seconds(daemon.pid), "slowest": slowest,
                "progress": report.get("registration"), "watched": report["watched"],
                "unregistered": len(report["unregistered_tasks"])}
    finally:
        stop_daemon(daemon)


def write_config(workdir: Path, store: BenchStore, registry: str, tasks: int, bases: int,
                 port: int) -> Path:
    lines = [*store.config_lines(), f"state_dir: {store.state_dir}", f"listen: 127.0.0.1:{port}",
             "registries:", f"  - host: {registry}"]
    lines += write_tasks(workdir / "contexts", registry, tasks, bases)
    path = workdir / "basewatch.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[GOAL_SIZE])
    add_store_argument(parser)
    parser.add_argument("--bases", type=int, default=300)
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="another checkout to measure on the same configs (repeatable)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", type=Path,
                        help="run each daemon under cProfile, its stats written to "
                             "PROFILE-STORE-SIZE-START.prof (read them with pstats)")
    args = parser.parse_args()
    results: dict[tuple[str, str, int], dict] = {}
    # The floor under "/healthz after the spawn" on this machine as loaded now: the
    # interpreter starting and importing what `serve` needs to bind its port (the daemon
    # itself is imported after, on a thread, while the port answers 503).
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import basewatch.cli, basewatch.serve"],
                   env=dict(os.environ, PYTHONPATH=str(REPO)), check=True, cwd=REPO)
    floor = time.monotonic() - started
    print(f"python -c 'import basewatch.cli, basewatch.serve': {floor:.2f} s; "
          f"{load_average()}", flush=True)
    trees = [("this", REPO)] + [(str(tree), tree.resolve()) for tree in args.tree]
    with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp:
        workdir = Path(tmp)
        registry = stack.Registry(workdir / "registry", stack.free_port()).start()
        try:
            asyncio.run(push_bases(registry.address, args.bases))
            for kind in chosen(args.store):
                for size in args.sizes:
                    for name, tree in trees:
                        run_dir = workdir / f"{kind}-{size}-{len(results)}"
                        run_dir.mkdir()
                        with bench_store(kind, run_dir) as store:
                            port = stack.free_port()
                            config = write_config(run_dir, store, registry.address, size,
                                                  args.bases, port)
                            for start in ("first start", "restart"):  # the restart: state kept
                                profile = args.profile and args.profile.with_name(
                                    f"{args.profile.name}-{kind}-{size}-"
                                    f"{start.replace(' ', '-')}.prof")
                                result = measure(tree, config, store, f"http://127.0.0.1:{port}",
                                                 run_dir, args.timeout, profile)
                                results.setdefault((name, kind, size), result)
                                print(f"start-up ({name}, {kind}, {start}): {size:>5} config "
                                      f"tasks: /healthz answered {result['healthz']:.2f} s after "
                                      f"the spawn, registered {result['registered']:.2f} s "
                                      f"(daemon CPU {result['cpu']:.2f} s, slowest /healthz "
                                      f"meanwhile {result['slowest'] * 1000:.0f} ms); "
                                      f"{result['watched']} watched references, "
                                      f"{result['unregistered']} unregistered; {load_average()}",
                                      flush=True)
        finally:
            registry.stop()
    size = GOAL_SIZE if GOAL_SIZE in args.sizes else max(args.sizes)
    judged = {kind: results[("this", kind, size)] for kind in chosen(args.store)}
    met = size >= GOAL_SIZE and all(
        r["healthz"] < GOAL_HEALTHZ_SECONDS and r["registered"] < GOAL_REGISTERED_SECONDS
        and r["unregistered"] == 0 for r in judged.values())
    figures = ", ".join(f"{kind} /healthz in {r['healthz']:.2f} s, registered in "
                        f"{r['registered']:.2f} s" for kind, r in judged.items())
    print(f"summary: {size} config tasks, first start: {figures}; goal: /healthz < "
          f"{GOAL_HEALTHZ_SECONDS:.0f} s and {GOAL_SIZE} registered < "
          f"{GOAL_REGISTERED_SECONDS:.0f} s on each store (the port's import floor: "
          f"{floor:.2f} s); verdict: {'met' if met else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
