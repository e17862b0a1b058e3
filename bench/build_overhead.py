"""`basewatch build` against `docker build` + `docker push` of the same context on the same engine.

    .venv/bin/python bench/build_overhead.py [--rounds 5]

A real daemon (`basewatch serve`), a real registry, one engine for both. Each round builds a
context both ways, in alternating order, with a build arg that changes every round so the `RUN`
step really runs; both push to the same registry. basewatch's figure includes what it adds:
starting the Python CLI, packing and uploading the context, queueing, checking the base against
the registry, and streaming the log back. Two contexts:
- `typical`: an application-sized step (writes and hashes 64 MiB, a 16 MiB layer pushed);
- `tiny`: one `echo`, where the fixed overhead weighs most (the worst case, reported as well).
The figure is the ratio of the medians; the summary judges the typical context.
Goal: at most 1.10.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import docker  # noqa: E402

import stack  # noqa: E402
from busybox_images import BaseImages  # noqa: E402

GOAL = 1.10
TOKEN = "bench-build-token"


def docker_cli() -> str:
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("bench: no docker CLI found")


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command[:3])} failed:\n{result.stdout[-2000:]}"
                         f"{result.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp, \
            stack.engine_for_session() as engine:
        workdir = Path(tmp)
        registry = stack.Registry(workdir / "registry", stack.free_port()).start()
        reg = registry.address
        port = stack.free_port()
        daemon = None
        try:
            client = docker.DockerClient(base_url=engine.docker_host, version="auto")
            BaseImages(client, workdir / "images").build(f"{reg}/base:1")
            client.close()
            contexts = {}
            for name, step in (
                    ("typical", "RUN echo $NONCE > /nonce && dd if=/dev/urandom of=/work "
                                "bs=1M count=64 2>/dev/null && sha256sum /work && "
                                "head -c 16777216 /work > /layer && rm /work"),
                    ("tiny", "RUN echo $NONCE > /nonce")):
                context = contexts[name] = workdir / name
                context.mkdir()
                (context / "Dockerfile").write_text(
                    f"FROM {reg}/base:1\nARG NONCE\nCOPY . /app\n{step}\n")
                (context / "data.bin").write_bytes(os.urandom(256 * 1024))
            config = workdir / "basewatch.yml"
            config.write_text(json.dumps({
                "state_dir": str(workdir / "state"), "listen": f"127.0.0.1:{port}",
                "poll_interval": "1h", "api_token_env": "BENCH_TOKEN",
                "registries": [{"host": reg}]}))
            env = dict(os.environ, DOCKER_HOST=engine.docker_host, DOCKER_BUILDKIT="0",
                       BENCH_TOKEN=TOKEN, BASEWATCH_TOKEN=TOKEN,
                       BASEWATCH_URL=f"http://127.0.0.1:{port}")
            daemon = subprocess.Popen(
                [str(REPO / ".venv" / "bin" / "basewatch"), "serve", "--config", str(config)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                stack.daemon_health(f"http://127.0.0.1:{port}", daemon)
            except RuntimeError as exc:
                raise SystemExit(f"bench: {exc}") from None
            results = {name: measure(context, args.rounds, reg, env, name)
                       for name, context in contexts.items()}
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=60)
            registry.stop()
    for name, (docker_median, basewatch_median) in results.items():
        print(f"{name}: docker build + push median {docker_median:.2f} s; basewatch build "
              f"median {basewatch_median:.2f} s; ratio {basewatch_median / docker_median:.2f} "
              f"(+{basewatch_median - docker_median:.2f} s)")
    docker_median, basewatch_median = results["typical"]
    ratio = basewatch_median / docker_median
    verdict = "PASS" if ratio <= GOAL else "FAIL"
    print(f"summary: basewatch build / (docker build + push), typical context = {ratio:.2f} "
          f"(tiny context: {results['tiny'][1] / results['tiny'][0]:.2f}); goal: <= {GOAL:.2f}; "
          f"verdict: {verdict}")
    return 0


def measure(context: Path, rounds: int, reg: str, env: dict[str, str],
            label: str) -> tuple[float, float]:
    """Medians of (docker build + push, basewatch build) over `rounds`, after a warm-up."""
    cli, basewatch = docker_cli(), str(REPO / ".venv" / "bin" / "basewatch")
    times = {"docker": [], "basewatch": []}
    for round_ in range(rounds + 1):  # round 0 warms both paths up
        runs = {
            "docker": lambda n=round_: timed(
                [cli, "build", "--network", "host", "-q", "--build-arg", f"NONCE=d{n}",
                 "-t", f"{reg}/{label}-docker:{n}", str(context)], env) + timed(
                [cli, "push", "-q", f"{reg}/{label}-docker:{n}"], env),
            "basewatch": lambda n=round_: timed(
                [basewatch, "build", "--build-arg", f"NONCE=b{n}", "-t",
                 f"{reg}/{label}-basewatch:{n}", str(context)], env),
        }
        order = ("docker", "basewatch") if round_ % 2 else ("basewatch", "docker")
        seconds = {name: runs[name]() for name in order}
        if round_:
            for name, value in seconds.items():
                times[name].append(value)
        print(f"{label} round {round_}{' (warm-up)' if not round_ else ''}: docker "
              f"{seconds['docker']:.2f} s, basewatch {seconds['basewatch']:.2f} s", flush=True)
    return statistics.median(times["docker"]), statistics.median(times["basewatch"])


if __name__ == "__main__":
    sys.exit(main())
