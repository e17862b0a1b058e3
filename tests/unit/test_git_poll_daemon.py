"""The git poller in the daemon: started with the watcher when git_poll_interval is set, off at
0, its failing remotes in /healthz, its polls in /metrics."""
from __future__ import annotations

import shutil

import aiohttp

from basewatch.config import TaskSettings
from tests.support.git_remotes import GitRemote
from tests.support.inprocess_daemon import running_daemon
from tests.support.waiting import wait_for


def git_task(remote: GitRemote) -> TaskSettings:
    return TaskSettings(name="app", context=remote.url + "#main", image=["reg.example/app"])


async def get_json(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


async def test_polling_is_off_at_zero(tmp_path, monkeypatch):
    remote = GitRemote.create(tmp_path / "served" / "app.git")
    async with running_daemon(tmp_path, monkeypatch, git_poll_interval=0,
                              tasks=[git_task(remote)]) as daemon:
        assert daemon.git_poller is None
        assert (await get_json(f"{daemon.url}/healthz"))["failing_remotes"] == {}


async def test_the_daemon_polls_queues_a_run_of_a_push_and_reports_a_failing_remote(
        tmp_path, monkeypatch):
    remote = GitRemote.create(tmp_path / "served" / "app.git")
    async with running_daemon(tmp_path, monkeypatch, git_poll_interval=0.1,
                              tasks=[git_task(remote)]) as daemon:
        store = daemon.store

        async def recorded():
            return (await store.git_heads.heads()).get(remote.url, {}).get("main")

        assert await wait_for(recorded, 20, "the first poll", 0.05) == remote.head()
        sha = remote.commit()

        async def queued():
            return [run for run in await store.runs.list(task="app")
                    if run.source_commit is not None and run.source_commit.commit == sha]

        (run,) = await wait_for(queued, 20, "a run of the moved head", 0.05)
        assert (run.trigger.value, run.source_commit.branch) == ("Commit", "main")
        shutil.rmtree(remote.bare)

        async def failing():
            return (await get_json(f"{daemon.url}/healthz"))["failing_remotes"]

        assert await wait_for(failing, 20, "the remote reported failing", 0.05) == {
            remote.url: f"cannot list the branches of {remote.url}: the repository was not found"}
        async with aiohttp.ClientSession() as session, \
                session.get(f"{daemon.url}/metrics") as response:
            metrics = await response.text()
        assert 'basewatch_git_polls_total{result="changed"} 1.0' in metrics
        assert 'basewatch_git_polls_total{result="error"}' in metrics
