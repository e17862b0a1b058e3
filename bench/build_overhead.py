"""`basewatch build` against `docker build` + `docker push` of the same context on the same engine.

    python3 bench/build_overhead.py [--rounds 10]

A real daemon (`basewatch serve`), a real registry, one engine for both. Each round builds a
context both ways, in alternating order, with a build arg that changes every round so the `RUN`
step really runs; both push to the same registry. basewatch's figure includes what it adds:
starting the Python CLI, packing and uploading the context, queueing, checking the base against
the registry, and streaming the log back. Two contexts:
- `typical`: an application-sized step (writes and hashes 64 MiB, a 16 MiB layer pushed);
- `tiny`: one `echo`, where the fixed overhead weighs most (the worst case, reported as well).
Before each measurement the disk's writeback is flushed (sync), and each round's images are
removed after it, so that one measurement's I/O does not land on the next.
The figure is the median of the per-round ratios (each round runs both ways back to back, in
alternating order); the summary judges the typical context.
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
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The interpreter running this script, on this checkout: not a hard-coded virtual environment.
BASEWATCH = [sys.executable, "-m", "basewatch"]
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


def timed(env: dict[str, str], *commands: list[str]) -> float:
    """Seconds to run `commands` one after the other."""
    # The last measurement's files are written back to disk first, so that its I/O does not
    # slow this one down.
    os.sync()
    started = time.perf_counter()
    for command in commands:
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"bench: {' '.join(command[:3])} failed:\n"
                             f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
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
            env = dict(os.environ, PYTHONPATH=str(REPO), DOCKER_HOST=engine.docker_host,
                       DOCKER_BUILDKIT="0",
                       BENCH_TOKEN=TOKEN, BASEWATCH_TOKEN=TOKEN,
                       BASEWATCH_URL=f"http://127.0.0.1:{port}")
            daemon = subprocess.Popen(
                [*BASEWATCH, "serve", "--config", str(config)],
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
    for figures in results.values():
        print(figures.report())
    ratio = results["typical"].ratio
    verdict = "PASS" if ratio <= GOAL else "FAIL"
    print(f"summary: basewatch build / (docker build + push), typical context = {ratio:.2f} "
          f"(tiny context: {results['tiny'].ratio:.2f}); goal: <= {GOAL:.2f}; "
          f"verdict: {verdict}")
    return 0


@dataclass
class Figures:
    """One context's seconds per round, both ways."""
    label: str
    docker: list[float] = field(default_factory=list)
    basewatch: list[float] = field(default_factory=list)

    def add(self, docker_seconds: float, basewatch_seconds: float) -> None:
        self.docker.append(docker_seconds)
        self.basewatch.append(basewatch_seconds)

    @property
    def ratios(self) -> list[float]:
        return [b / d for d, b in zip(self.docker, self.basewatch)]

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios: each round pairs two builds a moment apart, so a
        slow spell of the engine's, which both sides of a round share, mostly cancels out."""
        return statistics.median(self.ratios)

    def report(self) -> str:
        low, _, high = statistics.quantiles(self.ratios, n=4)
        docker, basewatch = statistics.median(self.docker), statistics.median(self.basewatch)
        return (f"{self.label}: docker build + push median {docker:.2f} s; basewatch build "
                f"median {basewatch:.2f} s ({basewatch - docker:+.2f} s); ratio per round: "
                f"median {self.ratio:.2f}, quartiles {low:.2f} to {high:.2f}, "
                f"ratio of the medians {basewatch / docker:.2f}")


def measure(context: Path, rounds: int, reg: str, env: dict[str, str],
            label: str) -> Figures:
    """Both ways, `rounds` times after a warm-up, back to back in alternating order."""
    cli = docker_cli()
    figures = Figures(label)
    for round_ in range(rounds + 1):  # round 0 warms both paths up
        tags = {"docker": f"{reg}/{label}-docker:{round_}",
                "basewatch": f"{reg}/{label}-basewatch:{round_}"}
        runs = {
            "docker": lambda n=round_: timed(
                env, [cli, "build", "-q", "--build-arg", f"NONCE=d{n}",
                      "-t", tags["docker"], str(context)],
                [cli, "push", "-q", tags["docker"]]),
            "basewatch": lambda n=round_: timed(
                env, [*BASEWATCH, "build", "--build-arg", f"NONCE=b{n}", "-t",
                      tags["basewatch"], str(context)]),
        }
        order = ("docker", "basewatch") if round_ % 2 else ("basewatch", "docker")
        seconds = {name: runs[name]() for name in order}
        # Every round starts from the same engine: the images just built go (their parent
        # layers, the build cache both ways share, stay).
        subprocess.run([cli, "rmi", "--no-prune", *tags.values()], env=env,
                       capture_output=True, check=True)
        if round_:
            figures.add(seconds["docker"], seconds["basewatch"])
        print(f"{label} round {round_}{' (warm-up)' if not round_ else ''}: docker "
              f"{seconds['docker']:.2f} s, basewatch {seconds['basewatch']:.2f} s"
              + (f", ratio {seconds['basewatch'] / seconds['docker']:.2f}" if round_ else ""),
              flush=True)
    return figures


if __name__ == "__main__":
    sys.exit(main())
