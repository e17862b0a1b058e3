"""Polling alone builds a new commit: a task on a repository served by `git http-backend`, no
webhook, git_poll_interval 1 s; a push gives one run that builds and pushes that commit, and
polls that see it again give no second run."""
from __future__ import annotations

import asyncio

import pytest

from basewatch.config import Config, RegistrySettings, TaskSettings
from basewatch.daemon import Daemon
from basewatch.models import RunStatus
from tests.support.git_http import GitHttpServer
from tests.support.git_remotes import GitRemote
from tests.support.inprocess_daemon import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


async def test_polling_alone_builds_a_new_commit_once(tmp_path, docker_host, registry,
                                                      base_images):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/base-release": "1\n"})
    remote = GitRemote.create(tmp_path / "served" / "app.git")
    remote.base = f"{reg}/base:1"
    remote.commit()
    async with GitHttpServer(remote.bare.parent) as server:
        config = Config(
            state_dir=tmp_path / "state", listen=f"127.0.0.1:{free_port()}",
            git_poll_interval=1, poll_interval=3600, registries=[RegistrySettings(host=reg)],
            allowed_context_hosts=["127.0.0.1"],
            tasks=[TaskSettings(name="app", context=server.url("app.git") + "#main",
                                image=[f"{reg}/app:latest"])])
        daemon = Daemon(config, docker_host)
        await daemon.start()
        try:

            async def polled():
                return server.url("app.git") in await daemon.store.git_heads.heads()

            await wait_for(polled, 30, "the first poll")
            sha = remote.commit()

            async def finished():
                runs = await daemon.store.runs.list(task="app")
                return runs if runs and runs[0].status.finished else None

            [run] = await wait_for(finished, 120, "the commit's run")
            assert run.status == RunStatus.SUCCEEDED, run.error
            assert run.git_revision == sha
            polls = daemon.metrics.registry.get_sample_value
            seen = polls("basewatch_git_polls_total", {"result": "ok"}) or 0

            async def polled_again():
                return (polls("basewatch_git_polls_total", {"result": "ok"}) or 0) >= seen + 2

            await wait_for(polled_again, 30, "two more polls of the same head")
            assert len(await daemon.store.runs.list(task="app")) == 1
        finally:
            await daemon.stop()
