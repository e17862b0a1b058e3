"""Commit and pull-request runs on the real engine and registry, from a repository served by
`git http-backend`: an event builds and pushes exactly its commit (not the branch's newer
head), records commit and branch, tags it `{{.Run.Commit}}`; a pull request builds its head,
fetched by `refs/pull/N/head`; the same event twice gives one run; a commit the repository
does not have fails its run, clearly, and the daemon goes on. And a commit to a base image's
repository rebuilds the base, then (base-image trigger) its dependent after it."""
from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from basewatch.config import Config, RegistrySettings, TaskSettings
from basewatch.daemon import Daemon
from basewatch.models import Run, RunStatus, SourceCommit, Trigger
from basewatch.triggers.source_events import SourceEvent
from tests.support.git_http import GitHttpServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


class Repository:
    """A work tree and the bare repository it pushes to, which the server serves."""

    def __init__(self, served: Path, name: str):
        self.work, self.bare = served.parent / f"{name}-work", served / f"{name}.git"
        self.work.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(["git", "-C", str(cwd or self.work), "-c", "user.email=t@e.x",
                               "-c", "user.name=t", *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    def commit(self, files: dict[str, str], ref: str = "refs/heads/main") -> str:
        for name, text in files.items():
            (self.work / name).write_text(text)
        self.git("add", ".")
        self.git("commit", "-qm", "change")
        self.git("push", "-q", "-f", str(self.bare), f"HEAD:{ref}")
        return self.git("rev-parse", "HEAD")


async def start_daemon(tmp_path: Path, docker_host: str, registry: str,
                       tasks: list[TaskSettings]) -> Daemon:
    # An hour between polls: every base-image run here comes from a check a run's end asks.
    config = Config(state_dir=tmp_path / "state", listen="127.0.0.1:0", poll_interval=3600,
                    registries=[RegistrySettings(host=registry)], tasks=tasks)
    daemon = Daemon(config, docker_host)
    await daemon.start()
    return daemon


async def finished(daemon: Daemon, run_id: str, timeout: float = 90) -> Run:
    async def done():
        run = await daemon.store.runs.get(run_id)
        return run if run.status.finished else None

    return await wait_for(done, timeout, f"run {run_id} to finish")


def log_of(daemon: Daemon, run_id: str) -> str:
    return (daemon.config.state_dir / "logs" / f"{run_id}.log").read_text()


async def test_commit_and_pull_request_events_build_exactly_their_commits(
        tmp_path, registry, base_images, docker_host):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    repo = Repository(tmp_path / "served", "app")
    dockerfile = f"FROM {reg}/base:1\nCOPY version.txt /version.txt\n"
    first = repo.commit({"Dockerfile": dockerfile, "version.txt": "A\n"})
    # The branch moves on before the event is handled: the run must still build `first`.
    repo.commit({"version.txt": "B\n"})
    async with GitHttpServer(tmp_path / "served") as server:
        url = server.url("app.git")
        app = TaskSettings(name="app", context=f"{url}#main",
                           image=[f"{reg}/app:{{{{.Run.Commit}}}}", f"{reg}/app:latest"],
                           pull_request_trigger={"enabled": True})
        daemon = await start_daemon(tmp_path, docker_host, reg, [app])
        try:
            push = SourceEvent("github", "push", (url,), branch="main", commit=first,
                               delivery="delivery-1")
            outcome = await daemon.commit_triggers.on_event(push)
            (run_id,) = outcome.run_ids
            run = await finished(daemon, run_id)
            assert run.status is RunStatus.SUCCEEDED, run.error
            assert (run.trigger, run.source_commit, run.git_revision) == (
                Trigger.COMMIT, SourceCommit(first, "main"), first)
            assert {o.image for o in run.outputs} == {f"{reg}/app:{first}", f"{reg}/app:latest"}
            assert await asyncio.to_thread(base_images.read_file, f"{reg}/app:{first}",
                                           "/version.txt") == "A\n"
            log = log_of(daemon, run_id)
            assert f"Fetching commit {first} (branch main)" in log
            assert f"trigger Commit (commit {first[:12]} pushed to main, from github)" in log
            view = await daemon.services.get_run(run_id)
            assert view["source_commit"]["commit"] == first
            assert view["source_commit"]["branch"] == "main"

            # Delivered again, or seen by a poll: no second run.
            again = await daemon.commit_triggers.on_event(push)
            assert again.run_ids == () and "has a run of app already" in again.reason
            polled = SourceEvent("poll", "push", (url.removesuffix(".git") + "/",),
                                 branch="main", commit=first)
            assert (await daemon.commit_triggers.on_event(polled)).run_ids == ()

            # A commit the repository does not have: the run fails saying so.
            missing = "0123456789abcdef0123456789abcdef01234567"
            (lost_id,) = (await daemon.commit_triggers.on_event(
                SourceEvent("github", "push", (url,), branch="main", commit=missing))).run_ids
            lost = await finished(daemon, lost_id)
            assert lost.status is RunStatus.ERROR
            assert lost.error.startswith(f"the commit {missing} is not in {url} "
                                         "(nor on refs/heads/main)"), lost.error

            # ... and the daemon goes on: a pull request builds its head, by its ref, which
            # only the pull request's ref names (a fork's branch is not in the repository).
            repo.git("checkout", "-q", "-b", "feature")
            head = repo.commit({"version.txt": "C\n"}, ref="refs/heads/feature")
            repo.git("update-ref", "refs/pull/3/head", head, cwd=repo.bare)
            repo.git("update-ref", "-d", "refs/heads/feature", cwd=repo.bare)
            request = SourceEvent("github", "pull_request", (url,), branch="feature",
                                  commit=head, target_branch="main", pull_request=3,
                                  fetch_ref="refs/pull/3/head")
            (pr_id,) = (await daemon.commit_triggers.on_event(request)).run_ids
            pr_run = await finished(daemon, pr_id)
            assert pr_run.status is RunStatus.SUCCEEDED, pr_run.error
            assert pr_run.trigger is Trigger.PULL_REQUEST
            assert pr_run.source_commit == SourceCommit(head, "feature", 3, "main",
                                                        "refs/pull/3/head")
            assert await asyncio.to_thread(base_images.read_file, f"{reg}/app:{head}",
                                           "/version.txt") == "C\n"
            assert f"Fetching commit {head} (pull request #3, refs/pull/3/head)" in \
                log_of(daemon, pr_id)
            assert (await daemon.commit_triggers.on_event(request)).run_ids == ()
            assert len(await daemon.store.runs.list(task="app")) == 3
        finally:
            await daemon.stop()


async def test_a_commit_to_a_base_images_repository_rebuilds_the_base_then_its_dependent(
        tmp_path, registry, base_images, docker_host):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/busybox:1", {"/etc/release": "1\n"})
    # The base as an earlier build left it, so the dependent can be registered on it.
    await asyncio.to_thread(base_images.build, f"{reg}/base:latest",
                            {"/etc/base-version": "0\n"})
    repo = Repository(tmp_path / "served", "base")
    repo.commit({"Dockerfile": f"FROM {reg}/busybox:1\nCOPY version /etc/base-version\n",
                 "version": "0\n"})
    patched = repo.commit({"version": "patched\n"})
    app_folder = tmp_path / "apps" / "app"
    app_folder.mkdir(parents=True)
    (app_folder / "Dockerfile").write_text(
        f"FROM {reg}/base:latest\nRUN cp /etc/base-version /app-saw\n")
    async with GitHttpServer(tmp_path / "served") as server:
        url = server.url("base.git")
        tasks = [TaskSettings(name="base", context=f"{url}#main", image=[f"{reg}/base:latest"]),
                 TaskSettings(name="app", context=app_folder, image=[f"{reg}/app:latest"])]
        daemon = await start_daemon(tmp_path, docker_host, reg, tasks)
        try:
            assert (await daemon.registrar.graph()).ancestors("app") == {"base"}
            (base_id,) = (await daemon.commit_triggers.on_event(SourceEvent(
                "gitea", "push", (url,), branch="main", commit=patched))).run_ids

            async def app_done():
                runs = await daemon.store.runs.list(task="app")
                return runs[0] if runs and runs[0].status.finished else None

            app_run = await wait_for(app_done, 120, "the dependent's rebuild")
            base_run = await daemon.store.runs.get(base_id)
            assert base_run.status is RunStatus.SUCCEEDED and \
                app_run.status is RunStatus.SUCCEEDED, (base_run.error, app_run.error)
            assert app_run.trigger is Trigger.IMAGE_UPDATE
            assert app_run.started_at >= base_run.finished_at, "built after the base, not beside"
            assert app_run.base_digests[f"{reg}/base:latest"] == base_run.outputs[0].digest
            assert await asyncio.to_thread(base_images.read_file, f"{reg}/app:latest",
                                           "/app-saw") == "patched\n"
            assert len(await daemon.store.runs.list(task="app")) == 1
        finally:
            await daemon.stop()
