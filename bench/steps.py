"""A task file's ten `cmd` steps run by the Docker backend, against the same ten containers run
by `docker run` one after another from a shell script, on the same engine.

    python3 bench/steps.py [--rounds 5]

Each step runs busybox `true` and exits at once, so what is measured is what running a step
costs. basewatch's figure includes making the run's network and workspace volume, copying the
(empty) context in, and removing all of it at the end; the script does the same with the CLI
(`docker network create`, `docker volume create`, then each step as `docker run --rm --network
NET --network-alias ID -v VOLUME:/workspace -w /workspace`, then both removed). A bare
`docker run --rm busybox true` ten times (no network, no volume) is shown for reference. The rounds alternate which goes first; the figure is the
median of the per-round ratios. The same ten steps with `when: ["-"]` (all at once) are timed
too: that form must be faster than the sequential one.
Goal: sequential basewatch / sequential docker run at most 1.20, and parallel faster than
sequential.
"""
from __future__ import annotations

import argparse
import asyncio
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
from basewatch.builder.backends.docker.backend import DockerBackend  # noqa: E402
from basewatch.builder.backends.docker.docker_engine import DockerEngine  # noqa: E402
from basewatch.oci.image_sources import ImageSources  # noqa: E402
from basewatch.oci.registry import RegistryClient  # noqa: E402
from basewatch.run_plan import (  # noqa: E402
    CmdStep,
    Container,
    RunPlan,
    StepControl,
    TaskStep,
    Workspace,
)
from busybox_images import BaseImages  # noqa: E402

GOAL = 1.20
STEPS = 10
IMAGE = "bench/busybox:1"


class DiscardedLog:
    def line(self, text: str) -> None:
        pass

    def write(self, text: str) -> None:
        pass


def plan(run_id: str, context: Path, parallel: bool) -> RunPlan:
    when = ("-",) if parallel else None
    return RunPlan(run_id, "bench", context, [], [
        TaskStep(StepControl(f"step{n}", when=when), CmdStep(Container(IMAGE, args=("true",))))
        for n in range(STEPS)], Workspace())


async def run_backend(backend: DockerBackend, run_id: str, context: Path,
                      parallel: bool) -> float:
    failed = []

    async def report(outcome) -> None:
        if outcome.status != "Succeeded":
            failed.append(f"{outcome.step.control.id}: {outcome.status} {outcome.error}")

    started = time.perf_counter()
    await backend.run(plan(run_id, context, parallel), DiscardedLog(), report)
    seconds = time.perf_counter() - started
    if failed:
        raise SystemExit(f"bench: steps failed: {failed}")
    return seconds


def run_script(script: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"bench: the docker run script failed:\n{result.stderr[-2000:]}")
    return seconds


async def measure(docker_host: str, workdir: Path, rounds: int) -> dict[str, list[float]]:
    cli = shutil.which("docker") or "/usr/bin/docker"
    # What the backend does for the same steps, written as a person would with the CLI: the
    # run's network and workspace volume, each step's container on it under its id and with
    # the workspace as its working directory, all removed at the end.
    script = workdir / "steps.sh"
    script.write_text(
        "set -e\nrun=bench$$\n"
        f"{cli} network create $run >/dev/null\n{cli} volume create $run >/dev/null\n"
        + "".join(f"{cli} run --rm --network $run --network-alias step{n} "
                  f"-v $run:/workspace -w /workspace {IMAGE} true\n" for n in range(STEPS))
        + f"{cli} network rm $run >/dev/null\n{cli} volume rm $run >/dev/null\n")
    # And the bare form, for reference: no network, no workspace.
    bare = workdir / "bare.sh"
    bare.write_text("set -e\n" + f"{cli} run --rm {IMAGE} true\n" * STEPS)
    context = workdir / "context"
    context.mkdir()
    env = dict(os.environ, DOCKER_HOST=docker_host)
    figures: dict[str, list[float]] = {"docker": [], "bare": [], "sequential": [],
                                       "parallel": []}
    async with RegistryClient() as registry:
        backend = DockerBackend(lambda: DockerEngine(docker_host), ImageSources(), registry)
        try:
            for round_ in range(rounds + 1):  # round 0 warms every path up
                ways = {
                    "docker": lambda: asyncio.to_thread(run_script, script, env),
                    "bare": lambda: asyncio.to_thread(run_script, bare, env),
                    "sequential": lambda n=round_: run_backend(backend, f"seq{n}", context,
                                                               False),
                    "parallel": lambda n=round_: run_backend(backend, f"par{n}", context,
                                                             True),
                }
                order = list(ways) if round_ % 2 else list(reversed(ways))
                seconds = {}
                for name in order:
                    os.sync()  # the last measurement's writes do not land on this one
                    seconds[name] = await ways[name]()
                print(f"round {round_}{' (warm-up)' if not round_ else ''}: docker run "
                      f"{seconds['docker']:.2f} s (bare {seconds['bare']:.2f} s), basewatch "
                      "sequential "
                      f"{seconds['sequential']:.2f} s, basewatch parallel "
                      f"{seconds['parallel']:.2f} s", flush=True)
                if round_:
                    for name, value in seconds.items():
                        figures[name].append(value)
        finally:
            backend.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp, \
            stack.engine_for_session() as engine:
        workdir = Path(tmp)
        client = docker.DockerClient(base_url=engine.docker_host, version="auto")
        BaseImages(client, workdir / "images").build(IMAGE, push=False)
        client.close()
        figures = asyncio.run(measure(engine.docker_host, workdir, args.rounds))
    ratios = [b / d for d, b in zip(figures["docker"], figures["sequential"])]
    ratio = statistics.median(ratios)
    docker_s = statistics.median(figures["docker"])
    sequential = statistics.median(figures["sequential"])
    parallel = statistics.median(figures["parallel"])
    bare = statistics.median(figures["bare"])
    print(f"docker run x{STEPS} (shell script, with the run's network and workspace): median "
          f"{docker_s:.2f} s ({docker_s / STEPS:.3f} s a step)")
    print(f"docker run x{STEPS} bare (no network, no volume; for reference): median "
          f"{bare:.2f} s; basewatch sequential / bare = {sequential / bare:.2f}")
    print(f"basewatch, {STEPS} steps one after the other: median {sequential:.2f} s "
          f"({sequential / STEPS:.3f} s a step); ratio per round: median {ratio:.2f}, "
          f"from {min(ratios):.2f} to {max(ratios):.2f}")
    print(f"basewatch, {STEPS} steps all at once (when: ['-']): median {parallel:.2f} s "
          f"({parallel / sequential:.2f} of the sequential form)")
    verdict = "PASS" if ratio <= GOAL and parallel < sequential else "FAIL"
    print(f"summary: basewatch steps / docker run script = {ratio:.2f}, parallel / sequential "
          f"= {parallel / sequential:.2f}; goal: <= {GOAL:.2f} and parallel faster; "
          f"verdict: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
