"""Git sources: one poll cycle over many remotes, and push-to-run-start with polling and with
a webhook.

    python3 bench/source_latency.py [--repositories 200] [--samples 10] [--concurrency 16]

(a) Poll cycle: N repositories served by `git http-backend` (tests/support/git_http.py, in a
    process of its own), one task on each; after a first cycle (first sight: heads recorded),
    a steady cycle is timed: one `git ls-remote` per remote, through the poller and the store.
    Raw baseline: the same N `git ls-remote` calls run one after another, nothing else; the
    ratio is the poller's cycle over the baseline. Goal: N = 200 in under 5 s on 2 cores.
(b) Polling latency: a daemon in this process (real engine and registry, scripts/stack.py)
    with git_poll_interval 1 s and a task on a repository served by `git http-backend`; each
    sample pushes a commit at a random point of the poll interval and reads the run's start
    time from the store. Goal: median under 1.5 s. Needs the real commit triggers
    (basewatch/triggers/commits.py wired in daemon.py): without them this part says so and is
    skipped.
(c) Webhook latency: a daemon in this process with polling off and a task whose webhook
    secret is set; each sample pushes a commit, then POSTs GitHub's published push body
    (tests/fixtures/webhooks/github-push.json, pointed at that commit) signed with
    X-Hub-Signature-256 to /webhooks/github, and reads the run's start time from the store:
    from the POST to the run started. Raw baseline: the same signed POST to a bare aiohttp
    handler in this process that reads the body and answers 202, nothing else; the ratio is
    the median latency over the baseline's median. Goal: median under 0.2 s.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import stack  # noqa: E402
from basewatch.builder.contexts.checkout import Checkouts  # noqa: E402
from basewatch.netpolicy import HostPolicy  # noqa: E402
from basewatch.store import SQLiteStore  # noqa: E402
from basewatch.tasks import Task  # noqa: E402
from basewatch.triggers.source_events import SourceOutcome  # noqa: E402
from basewatch.watcher.git_poll import GitPoller  # noqa: E402
from tests.support.git_remotes import GitRemote  # noqa: E402
from tests.support.webhook_bodies import github_push, hub_signature  # noqa: E402

CYCLE_GOAL_SECONDS = 5.0
CYCLE_GOAL_SIZE = 200
POLL_GOAL_SECONDS = 1.5
WEBHOOK_GOAL_SECONDS = 0.2
HOOK_SECRET_ENV = "BASEWATCH_BENCH_HOOK_SECRET"


# --- the git server, in a process of its own ---------------------------------------------

def serve(root: Path) -> None:
    """`--serve ROOT`: serve ROOT's bare repositories over smart HTTP; print the port."""
    from tests.support.git_http import GitHttpServer

    async def forever() -> None:
        async with GitHttpServer(root) as server:
            print(server.port, flush=True)
            await asyncio.Event().wait()

    asyncio.run(forever())


class GitServer:
    def __init__(self, root: Path):
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", str(root)],
                                        stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())

    def url(self, repository: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repository}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# --- (a) one poll cycle ------------------------------------------------------------------

class CountingSink:
    def __init__(self):
        self.events = []

    async def on_event(self, event, tasks=None) -> SourceOutcome:
        self.events.append(event)
        return SourceOutcome()


def make_repositories(root: Path, count: int) -> list[str]:
    seed = GitRemote.create(root / "seed.git")
    names = [f"repo-{n:04d}.git" for n in range(count)]
    for name in names:
        shutil.copytree(seed.bare, root / name)
    return names


async def raw_baseline(urls: list[str]) -> float:
    started = time.perf_counter()
    for url in urls:
        process = await asyncio.create_subprocess_exec(
            "git", "ls-remote", "--symref", url, "HEAD", "refs/heads/main",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
        if await process.wait() != 0:
            raise SystemExit(f"bench: git ls-remote {url} failed")
    return time.perf_counter() - started


async def poll_cycle(urls: list[str], workdir: Path, concurrency: int) -> dict:
    store = await SQLiteStore.open(workdir / "cycle.db")
    try:
        tasks = [Task(name=f"app-{n:04d}", context=url + "#main", images=[f"reg.example/{n}"])
                 for n, url in enumerate(urls)]
        checkouts = Checkouts(workdir / "contexts", 1 << 20,
                              HostPolicy(("127.0.0.1",), only_listed=True))
        sink = CountingSink()

        async def read_tasks() -> list[Task]:
            return tasks

        poller = GitPoller(read_tasks, store.git_heads, checkouts, sink, 60.0,
                           concurrency=concurrency)
        first = await poller.poll_once()
        assert first.errors == 0 and first.polled == len(urls), first
        started = time.perf_counter()
        stats = await poller.poll_once()
        seconds = time.perf_counter() - started
        assert stats.errors == 0 and stats.polled == len(urls) and not sink.events, stats
        return {"remotes": stats.polled, "seconds": seconds}
    finally:
        await store.close()


# --- (b) push to run start, polling ------------------------------------------------------

def commit_triggers_missing() -> str | None:
    if importlib.util.find_spec("basewatch.triggers.commits") is None:
        return "basewatch/triggers/commits.py is not in this tree"
    return None


async def polling_latency(samples: int, workdir: Path, docker_host: str,
                          server: GitServer, remote: GitRemote) -> list[float] | str:
    from basewatch.config import Config, RegistrySettings, TaskSettings
    from basewatch.daemon import Daemon

    registry = stack.Registry(workdir / "registry", stack.free_port()).start()
    reg = registry.address
    config = Config(state_dir=workdir / "state", listen=f"127.0.0.1:{stack.free_port()}",
                    git_poll_interval=1, poll_interval=3600,
                    registries=[RegistrySettings(host=reg)],
                    allowed_context_hosts=["127.0.0.1"],
                    tasks=[TaskSettings(name="app", context=server.url("app.git") + "#main",
                                        image=[f"{reg}/app:latest"])])
    latencies: list[float] = []
    daemon = Daemon(config, docker_host)
    await daemon.start()
    try:
        await wait_polled(daemon, server.url("app.git"))
        for sample in range(samples + 1):  # sample 0 warms up (first build, engine caches)
            # A push at a random point of the poll interval: pushing right after the last
            # run ends would lock every sample to one phase of the schedule.
            await asyncio.sleep(random.uniform(0, 1))
            pushing = time.time()
            await asyncio.to_thread(remote.commit, "main")
            run = await wait_for_run(daemon, sample + 1)
            latency = run.started_at.timestamp() - pushing
            print(f"  polling {'warm-up' if sample == 0 else f'sample {sample}'}: {run.id} "
                  f"started {latency:.3f} s after the push", flush=True)
            if sample:
                latencies.append(latency)
            await wait_finished(daemon, run.id)
    finally:
        await daemon.stop()
        registry.stop()
    return latencies


async def wait_polled(daemon, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while url not in await daemon.store.git_heads.heads():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {url} was not polled within {timeout:.0f}s")
        await asyncio.sleep(0.05)


async def wait_for_run(daemon, count: int, timeout: float = 60, task: str = "app"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = await daemon.store.runs.list(task=task, top=count)  # newest first
        if len(runs) >= count and runs[0].started_at is not None:
            return runs[0]
        await asyncio.sleep(0.01)
    raise SystemExit(f"bench: run {count} did not start within {timeout:.0f}s")


async def wait_finished(daemon, run_id: str) -> None:
    while not (await daemon.store.runs.get(run_id)).status.finished:
        await asyncio.sleep(0.05)


# --- (c) push to run start, webhook ------------------------------------------------------

async def webhook_latency(samples: int, workdir: Path, docker_host: str, server: GitServer,
                          remote: GitRemote) -> tuple[list[float], list[float]]:
    """(POST -> run started, raw POST) per sample, in seconds."""
    import aiohttp
    from aiohttp import web

    from basewatch.config import Config, RegistrySettings, TaskSettings
    from basewatch.daemon import Daemon

    secret = os.urandom(16).hex()
    os.environ[HOOK_SECRET_ENV] = secret
    url = server.url("hook.git")
    registry = stack.Registry(workdir / "registry-c", stack.free_port()).start()
    reg = registry.address
    port = stack.free_port()
    config = Config(state_dir=workdir / "state-c", listen=f"127.0.0.1:{port}",
                    git_poll_interval=0, poll_interval=3600,  # the webhook alone starts runs
                    registries=[RegistrySettings(host=reg)],
                    allowed_context_hosts=["127.0.0.1"],
                    tasks=[TaskSettings(name="hook", context=url + "#main",
                                        image=[f"{reg}/hook:latest"],
                                        webhook_secret_env=HOOK_SECRET_ENV)])

    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"run_ids": []}, status=202)

    baseline_app = web.Application()
    baseline_app.router.add_post("/webhooks/github", bare)
    runner = web.AppRunner(baseline_app)
    await runner.setup()
    baseline_port = stack.free_port()
    await web.TCPSite(runner, "127.0.0.1", baseline_port).start()
    latencies: list[float] = []
    raw: list[float] = []
    daemon = Daemon(config, docker_host)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as session:
            async def post(target: int, body: bytes, delivery: str) -> tuple[int, float]:
                started = time.perf_counter()
                async with session.post(
                        f"http://127.0.0.1:{target}/webhooks/github", data=body, headers={
                            "Content-Type": "application/json", "X-GitHub-Event": "push",
                            "X-GitHub-Delivery": delivery,
                            "X-Hub-Signature-256": hub_signature(secret, body)}) as response:
                    await response.read()
                    return response.status, time.perf_counter() - started

            for sample in range(samples + 1):  # sample 0 warms up (first build, caches)
                sha = await asyncio.to_thread(remote.commit, "main")
                body = github_push(url, sha)
                raw_status, raw_seconds = await post(baseline_port, body, f"raw-{sample}")
                posting = time.time()
                status, _ = await post(port, body, f"bench-{sample}")
                if (raw_status, status) != (202, 202):
                    raise SystemExit(f"bench: the webhook answered {status}, the bare "
                                     f"handler {raw_status}")
                run = await wait_for_run(daemon, sample + 1, task="hook")
                latency = run.started_at.timestamp() - posting
                print(f"  webhook {'warm-up' if sample == 0 else f'sample {sample}'}: {run.id} "
                      f"started {latency:.3f} s after the POST (raw POST {raw_seconds:.4f} s)",
                      flush=True)
                if sample:
                    latencies.append(latency)
                    raw.append(raw_seconds)
                await wait_finished(daemon, run.id)
    finally:
        await daemon.stop()
        await runner.cleanup()
        registry.stop()
        os.environ.pop(HOOK_SECRET_ENV, None)
    return latencies, raw


# --- the report --------------------------------------------------------------------------

def main() -> int:
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repositories", type=int, default=CYCLE_GOAL_SIZE)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--skip-latency", action="store_true",
                        help="only the poll cycle (no engine, no registry)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp:
        workdir = Path(tmp)
        served = workdir / "served"
        served.mkdir()
        names = make_repositories(served, args.repositories)
        remote = GitRemote.create(served / "app.git")
        hook_remote = GitRemote.create(served / "hook.git")
        server = GitServer(served)
        try:
            urls = [server.url(name) for name in names]
            baseline = asyncio.run(raw_baseline(urls))
            cycle = asyncio.run(poll_cycle(urls, workdir, args.concurrency))
            ratio = cycle["seconds"] / baseline
            print(f"poll cycle: {cycle['remotes']} remotes in {cycle['seconds']:.3f} s "
                  f"(concurrency {args.concurrency}); raw baseline, {len(urls)} git ls-remote "
                  f"one after another: {baseline:.3f} s; ratio {ratio:.2f}", flush=True)
            latency: list[float] | str
            webhook: tuple[list[float], list[float]] | str
            if args.skip_latency:
                latency = webhook = "skipped (--skip-latency)"
            elif (missing := commit_triggers_missing()) is not None:
                latency = webhook = f"skipped: {missing}"
            else:
                with stack.engine_for_session() as engine:
                    latency = asyncio.run(polling_latency(args.samples, workdir,
                                                          engine.docker_host, server, remote))
                    webhook = asyncio.run(webhook_latency(args.samples, workdir,
                                                          engine.docker_host, server,
                                                          hook_remote))
        finally:
            server.stop()
    if isinstance(latency, str):
        print(f"push to run start, polling at 1 s: {latency}", flush=True)
        median = None
    else:
        median = statistics.median(latency)
        print(f"push to run start, polling at 1 s: {len(latency)} samples, median "
              f"{median:.3f} s, min {min(latency):.3f} s, max {max(latency):.3f} s", flush=True)
    if isinstance(webhook, str):
        print(f"push to run start, webhook: {webhook}", flush=True)
        hook_median = hook_ratio = None
    else:
        hooks, raw_posts = webhook
        hook_median, raw_median = statistics.median(hooks), statistics.median(raw_posts)
        hook_ratio = hook_median / raw_median
        print(f"push to run start, webhook (signed GitHub push, POST to run started): "
              f"{len(hooks)} samples, median {hook_median:.3f} s, min {min(hooks):.3f} s, "
              f"max {max(hooks):.3f} s; raw baseline, the same POST to a bare handler: median "
              f"{raw_median * 1000:.1f} ms; ratio {hook_ratio:.1f}", flush=True)
    measured = median is not None and hook_median is not None
    passed = (cycle["remotes"] >= CYCLE_GOAL_SIZE and cycle["seconds"] < CYCLE_GOAL_SECONDS
              and (median is None or median < POLL_GOAL_SECONDS)
              and (hook_median is None or hook_median < WEBHOOK_GOAL_SECONDS))
    shown = "not measured" if median is None else f"{median:.3f} s"
    hook_shown = "not measured" if hook_median is None else \
        f"{hook_median:.3f} s ({hook_ratio:.1f}x the bare POST)"
    print(f"summary: poll cycle over {cycle['remotes']} repositories: {cycle['seconds']:.2f} s "
          f"({ratio:.2f}x the raw sequential ls-remote baseline); push-to-run-start median "
          f"with polling at 1 s: {shown}; with a webhook: {hook_shown}; goals: "
          f"{CYCLE_GOAL_SIZE} in < {CYCLE_GOAL_SECONDS:.0f} s, polling median < "
          f"{POLL_GOAL_SECONDS} s, webhook median < {WEBHOOK_GOAL_SECONDS} s; verdict: "
          f"{'PASS' if passed else 'FAIL'}{'' if measured else ' (cycle only)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
