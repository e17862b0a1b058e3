"""Webhooks of the config file's tasks in the daemon: registered in the background as the
config is synced, once; a refused token logged and shown in /healthz, never fatal; a task
removed from the file on SIGHUP takes its hook away. A repository served by `git http-backend`,
its API the GitHub stand-in (through git_hosts); no engine is needed for any of it."""
from __future__ import annotations

import aiohttp
import yaml

from basewatch.config import TaskSettings
from basewatch.scm.hosts import GitHostSettings
from tests.support.git_http import GitHttpServer
from tests.support.git_remotes import GitRemote
from tests.support.github_api import GitHubApi
from tests.support.inprocess_daemon import running_daemon

PUBLIC = "https://bw.example.com"


async def health(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        return await response.json()


def task(name: str, context: str, token: str) -> TaskSettings:
    return TaskSettings(name=name, context=context, image=[f"reg.example/{name}"],
                        git_access_token_env=token)


async def test_config_tasks_hooks_are_synced_and_a_failure_is_in_healthz(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("GIT_TOKEN", "good-token")
    monkeypatch.setenv("WRONG_TOKEN", "wrong")
    for name in ("app", "other"):
        GitRemote.create(tmp_path / "served" / "org" / f"{name}.git").commit()
    async with GitHttpServer(tmp_path / "served") as git, \
            GitHubApi(tokens={"good-token": {"all"}}, repositories=("org/app", "org/other")) as api:
        context = git.url("org/app.git") + "#main"
        hosts = [GitHostSettings(host=f"127.0.0.1:{git.port}", provider="github",
                                 api_url=api.api_url)]
        tasks = [task("good", context, "GIT_TOKEN"),
                 task("bad", git.url("org/other.git") + "#main", "WRONG_TOKEN")]
        config_path = tmp_path / "basewatch.yml"
        async with running_daemon(tmp_path, monkeypatch, git_poll_interval=0, tasks=tasks,
                                  git_hosts=hosts, public_url=PUBLIC) as daemon:
            await daemon.config_sync.settled()
            [hook] = api.repositories["org/app"].hooks.values()
            assert hook["config"]["url"] == f"{PUBLIC}/webhooks/github"
            assert (await daemon.store.webhooks.get("good")).hook_id == hook["id"]
            report = await health(daemon.url)
            assert report["status"] == "degraded"
            assert list(report["failing_webhooks"]) == ["bad"]
            assert "refused the token in WRONG_TOKEN" in report["failing_webhooks"]["bad"]

            # Synced again (SIGHUP): nothing asked of the API for the registered hook; the task
            # removed from the file takes its hook away, the failing one no longer reported.
            before = len(api.requests())
            await daemon.config_sync.sync([tasks[0]])
            await daemon.config_sync.settled()
            assert len(api.requests()) == before
            config_path.write_text(yaml.safe_dump({"tasks": []}))
            daemon.config_path = config_path
            await daemon.reload()
            await daemon.config_sync.settled()
            assert api.repositories["org/app"].hooks == {}
            assert (await health(daemon.url))["failing_webhooks"] == {}
