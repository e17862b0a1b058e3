"""A ten-step task file of `cmd` steps that each exit at once, run by basewatch, against the
same ten containers run by `docker run` one after another from a shell script, on one engine.

    python3 bench/steps.py [--rounds 5]

Each step runs busybox `true` and exits at once, so what is measured is what running a step
costs. basewatch is timed two ways:
- `basewatch run -f steps.yaml /dev/null`, the CLI (a new Python process) against a daemon
  started here: the request, the run queued and planned, its log streamed back, the result;
  the issue's figure;
- the Docker backend in this process, given the plan directly: the steps alone.
Both include making the run's network and workspace volume, copying the (empty) context in,
and removing all of it at the end. The script does the same with the docker CLI (`docker
network create`, `docker volume create`, then each step as `docker run --rm --network NET
--network-alias ID -v VOLUME:/workspace -w /workspace`, then both removed): the baseline the
goal is judged against. A bare `docker run --rm busybox true` ten times (no network, no volume)
is the second baseline, shown beside it. The rounds alternate which goes first; a ratio is the
median of the per-round ratios. The same ten steps with `when: ["-"]` (all at once) are timed
too: that form must be faster than the sequential one.
Goal: `basewatch run -f` sequential / the docker run script at most 1.20, and the parallel
form faster than the sequential one.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
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
TOKEN = "bench-token"
STEPS = 10
IMAGE = "bench/busybox:1"


class DiscardedLog:
    def line(self, text: str) -> None:
        pass

    def write(self, text: str) -> None:
        pass


NAMES = {"docker": "docker run script", "bare": "docker run bare",
         "cli": "basewatch run -f sequential", "cli parallel": "basewatch run -f parallel",
         "sequential": "in-process sequential", "parallel": "in-process parallel"}


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


def task_file(parallel: bool) -> str:
    """The same ten steps as the in-process plan, as a user writes them."""
    when = '    when: ["-"]\n' if parallel else ""
    return "version: v1.1.0\nsteps:\n" + "".join(
        f"  - id: step{n}\n    cmd: {IMAGE} true\n{when}" for n in range(STEPS))


@contextlib.contextmanager
def daemon(docker_host: str, workdir: Path):
    """A basewatch daemon of this tree on the engine; yields the CLI's environment."""
    port = stack.free_port()
    config = workdir / "basewatch.yml"
    config.write_text(json.dumps({"state_dir": str(workdir / "state"),
                                  "listen": f"127.0.0.1:{port}", "poll_interval": "1h",
                                  "api_token_env": "API_TOKEN"}))
    env = dict(os.environ, DOCKER_HOST=docker_host, PYTHONPATH=str(REPO), API_TOKEN=TOKEN)
    process = subprocess.Popen([sys.executable, "-m", "basewatch", "serve", "--config",
                                str(config)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=workdir)
    try:
        url = f"http://127.0.0.1:{port}"
        stack.daemon_health(url, process)
        yield {k: v for k, v in env.items() if not k.startswith("BASEWATCH_")} | {
            "BASEWATCH_URL": url, "BASEWATCH_TOKEN": TOKEN}
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_cli(path: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "basewatch", "run", "-f", str(path),
                             "/dev/null"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0 or "was successful" not in result.stdout:
        raise SystemExit(f"bench: basewatch run -f failed:\n{result.stdout[-2000:]}"
                         f"{result.stderr[-2000:]}")
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
    files = {}
    for parallel in (False, True):
        files[parallel] = workdir / ("parallel.yaml" if parallel else "sequential.yaml")
        files[parallel].write_text(task_file(parallel))
    env = dict(os.environ, DOCKER_HOST=docker_host)
    figures: dict[str, list[float]] = {name: [] for name in NAMES}
    async with RegistryClient() as registry:
        backend = DockerBackend(lambda: DockerEngine(docker_host), ImageSources(), registry)
        try:
            with daemon(docker_host, workdir) as cli_env:
                for round_ in range(rounds + 1):  # round 0 warms every path up
                    ways = {
                        "docker": lambda: asyncio.to_thread(run_script, script, env),
                        "bare": lambda: asyncio.to_thread(run_script, bare, env),
                        "cli": lambda: asyncio.to_thread(run_cli, files[False], cli_env),
                        "cli parallel": lambda: asyncio.to_thread(run_cli, files[True],
                                                                  cli_env),
                        "sequential": lambda n=round_: run_backend(backend, f"seq{n}",
                                                                   context, False),
                        "parallel": lambda n=round_: run_backend(backend, f"par{n}",
                                                                 context, True),
                    }
                    order = list(ways) if round_ % 2 else list(reversed(ways))
                    seconds = {}
                    for name in order:
                        os.sync()  # the last measurement's writes do not land on this one
                        seconds[name] = await ways[name]()
                    print(f"round {round_}{' (warm-up)' if not round_ else ''}: "
                          + ", ".join(f"{NAMES[name]} {seconds[name]:.2f} s"
                                      for name in NAMES), flush=True)
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
    median = {name: statistics.median(values) for name, values in figures.items()}

    def ratios(name: str, baseline: str) -> tuple[float, float, float]:
        each = [a / b for a, b in zip(figures[name], figures[baseline])]
        return statistics.median(each), min(each), max(each)

    def line(name: str, what: str) -> str:
        ratio, low, high = ratios(name, "docker")
        bare, _, _ = ratios(name, "bare")
        return (f"{what}: median {median[name]:.2f} s ({median[name] / STEPS:.3f} s a step); "
                f"/ docker run script {ratio:.2f} (rounds {low:.2f} to {high:.2f}), "
                f"/ bare {bare:.2f}")

    print(f"docker run x{STEPS}, shell script with the run's network and workspace (the "
          f"baseline): median {median['docker']:.2f} s ({median['docker'] / STEPS:.3f} s a "
          "step)")
    print(f"docker run x{STEPS}, bare (no network, no volume; second baseline): median "
          f"{median['bare']:.2f} s")
    print(line("cli", f"basewatch run -f, {STEPS} steps one after the other (CLI and daemon)"))
    print(line("cli parallel", f"basewatch run -f, {STEPS} steps all at once (when: ['-'])"))
    print(line("sequential", f"in-process backend, {STEPS} steps one after the other"))
    print(line("parallel", f"in-process backend, {STEPS} steps all at once"))
    ratio, _, _ = ratios("cli", "docker")
    bare_ratio, _, _ = ratios("cli", "bare")
    faster = ratios("cli parallel", "cli")[0]
    verdict = "PASS" if ratio <= GOAL and faster < 1 else "FAIL"
    print(f"summary: basewatch run -f sequential / docker run script (with network and "
          f"volume) = {ratio:.2f} (/ bare docker run = {bare_ratio:.2f}); basewatch run -f "
          f"parallel / sequential = {faster:.2f}; goal: <= {GOAL:.2f} against the script with "
          f"network and volume, and parallel faster; verdict: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
