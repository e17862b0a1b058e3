"""`basewatch build` against `docker build` + `docker push` of the same context on the same engine.

    .venv/bin/python bench/build_overhead.py [--rounds 5]

A real daemon (`basewatch serve`), a real registry, one engine for both. Each round builds the
same small context both ways, in alternating order, with a build arg that changes every round so
the `RUN` step really runs; both push to the same registry. basewatch's figure includes what it
adds: packing and uploading the context, queueing, pulling the base (it always pulls), and
streaming the log back. The figure is the ratio of the medians.
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
import urllib.request
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
            context = workdir / "context"
            context.mkdir()
            (context / "Dockerfile").write_text(
                f"FROM {reg}/base:1\nARG NONCE\nCOPY . /app\nRUN echo $NONCE > /nonce\n")
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
            wait_healthy(port)
            cli, basewatch = docker_cli(), str(REPO / ".venv" / "bin" / "basewatch")
            times = {"docker": [], "basewatch": []}
            for round_ in range(args.rounds + 1):  # round 0 warms both paths up
                runs = {
                    "docker": lambda n=round_: timed(
                        [cli, "build", "--network", "host", "-q", "--build-arg", f"NONCE=d{n}",
                         "-t", f"{reg}/bench-docker:{n}", str(context)], env) + timed(
                        [cli, "push", "-q", f"{reg}/bench-docker:{n}"], env),
                    "basewatch": lambda n=round_: timed(
                        [basewatch, "build", "--build-arg", f"NONCE=b{n}", "-t",
                         f"{reg}/bench-basewatch:{n}", str(context)], env),
                }
                order = ("docker", "basewatch") if round_ % 2 else ("basewatch", "docker")
                for name in order:
                    seconds = runs[name]()
                    if round_:
                        times[name].append(seconds)
                print(f"round {round_}{' (warm-up)' if not round_ else ''}: " + ", ".join(
                    f"{name} {times[name][-1]:.2f} s" for name in ("docker", "basewatch")
                    if round_), flush=True)
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=60)
            registry.stop()
    docker_median = statistics.median(times["docker"])
    basewatch_median = statistics.median(times["basewatch"])
    ratio = basewatch_median / docker_median
    print(f"docker build + push: median {docker_median:.2f} s; basewatch build: median "
          f"{basewatch_median:.2f} s ({args.rounds} rounds)")
    verdict = "PASS" if ratio <= GOAL else "FAIL"
    print(f"summary: basewatch build / (docker build + push) = {ratio:.2f}; goal: <= {GOAL:.2f}; "
          f"verdict: {verdict}")
    return 0


def wait_healthy(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("bench: the daemon did not come up")


if __name__ == "__main__":
    sys.exit(main())
