"""Webhooks registered with a task's token and commit statuses, on a live daemon with the real
engine and registry, a repository served by `git http-backend`, and the GitHub and GitLab REST
API stand-ins as the repository's host's API (through `git_hosts`): `task create` registers the
hook with the documented body, a delivery signed with the secret the daemon kept queues a run,
the run posts its state to the commit with its log's link, `task delete` removes the hook; a bad
token fails `task create` and stores nothing; a failing status endpoint fails no run; `task
update` to another repository moves the hook; without a
token, `task webhook NAME` prints the URL, the secret and the events."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
from pathlib import Path

import aiohttp
import pytest

from basewatch.config import Config, RegistrySettings
from basewatch.daemon import Daemon
from basewatch.models import RunStatus
from basewatch.scm.hosts import GitHostSettings
from basewatch.triggers.manual import task_run
from tests.e2e.test_graph import cli
from tests.e2e.test_source_runs import Repository, finished
from tests.support.git_http import GitHttpServer
from tests.support.github_api import GitHubApi
from tests.support.gitlab_api import GitLabApi
from tests.support.inprocess_daemon import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

TOKEN = "scm-e2e-api-token"
PUBLIC = "https://basewatch.example.test"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "webhooks"


async def start(tmp_path: Path, docker_host: str, registry: str, git_host: str, provider: str,
                api_url: str, monkeypatch) -> Daemon:
    monkeypatch.setenv("SCM_E2E_API_TOKEN", TOKEN)
    monkeypatch.setenv("GIT_TOKEN", "good-token")
    monkeypatch.setenv("WRONG_TOKEN", "not-a-token")
    port = free_port()
    config = Config(state_dir=tmp_path / "state", listen=f"127.0.0.1:{port}",
                    poll_interval=3600, git_poll_interval=0,
                    registries=[RegistrySettings(host=registry)],
                    api_token_env="SCM_E2E_API_TOKEN", allowed_context_hosts=["127.0.0.1"],
                    public_url=PUBLIC,
                    git_hosts=[GitHostSettings(host=git_host, provider=provider,
                                               api_url=api_url)])
    daemon = Daemon(config, docker_host)
    await daemon.start()
    daemon.url = f"http://127.0.0.1:{port}"
    return daemon


async def run_cli(daemon: Daemon, *args: str):
    return await asyncio.to_thread(cli, *args, url=daemon.url, token=TOKEN)


def github_push(repository_url: str, commit: str) -> bytes:
    """GitHub's published push example, for this repository, branch and commit."""
    text = (FIXTURES / "github-push.json").read_text()
    text = text.replace("https://github.com/Codertocat/Hello-World", repository_url)
    text = text.replace("6113728f27ae82c7b1a177c8d03f9e96e0adf246", commit)
    return text.replace("refs/heads/master", "refs/heads/main").encode()


def gitlab_push(repository_url: str, commit: str) -> bytes:
    text = (FIXTURES / "gitlab-push-hook.json").read_text()
    text = text.replace("http://example.com/mike/diaspora", repository_url)
    text = text.replace("da1560886d4f094c3e6c9ef40349f7d38b5d27d7", commit)
    return text.replace("refs/heads/master", "refs/heads/main").encode()


async def deliver(daemon: Daemon, provider: str, data: bytes, secret: str) -> tuple[int, dict]:
    if provider == "github":
        digest = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "e2e-1",
                   "X-Hub-Signature-256": f"sha256={digest}"}
    else:
        headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}
    headers["Content-Type"] = "application/json"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{daemon.url}/webhooks/{provider}", data=io.BytesIO(data),
                                headers=headers) as response:
            return response.status, await response.json()


@pytest.mark.parametrize("stand_in, provider", [(GitHubApi, "github"), (GitLabApi, "gitlab")])
async def test_a_task_with_a_token_registers_its_hook_builds_on_its_delivery_and_reports(
        tmp_path, registry, base_images, docker_host, monkeypatch, stand_in, provider):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    repo = Repository(tmp_path / "served", "org/app")
    commit = repo.commit({"Dockerfile": f"FROM {reg}/base:1\nCOPY v /v\n", "v": "1\n"})
    async with GitHttpServer(tmp_path / "served") as git, \
            stand_in(tokens={"good-token": {"all"}}, repositories=("org/app",)) as api:
        git_host = f"127.0.0.1:{git.port}"
        daemon = await start(tmp_path, docker_host, reg, git_host, provider, api.api_url,
                             monkeypatch)
        try:
            created = await run_cli(daemon, "task", "create", "app", "--context",
                                    f"{git.url('org/app.git')}#main",
                                    "-t", f"{reg}/app:{{{{.Run.Commit}}}}",
                                    "--git-access-token-env", "GIT_TOKEN",
                                    "--report-status", "true")
            assert created.returncode == 0, created.stderr
            [hook] = api.repositories["org/app"].hooks.values()
            kept = await daemon.store.webhooks.get("app")
            assert kept.hook_id == hook["id"]
            shown = json.loads((await run_cli(daemon, "task", "show", "app")).stdout)
            assert shown["webhook"] == {"registered": True, "provider": provider,
                                        "hook_id": hook["id"]}
            assert kept.secret not in json.dumps(shown)
            if provider == "github":  # docs.github.com/rest/repos/webhooks#create
                assert (hook["events"], hook["active"]) == (["push", "pull_request"], True)
                assert hook["config"] == {"url": f"{PUBLIC}/webhooks/github",
                                          "content_type": "json", "secret": kept.secret,
                                          "insecure_ssl": "0"}
            else:  # docs.gitlab.com/api/project_webhooks
                assert (hook["url"], hook["token"]) == (f"{PUBLIC}/webhooks/gitlab",
                                                        kept.secret)
                assert hook["push_events"] and hook["merge_requests_events"]
                assert hook["enable_ssl_verification"] and not hook["tag_push_events"]

            # A push signed with the kept secret queues a run of exactly that commit.
            body = (github_push if provider == "github" else gitlab_push)(
                f"http://{git_host}/org/app", commit)
            status, answer = await deliver(daemon, provider, body, "forged-secret")
            assert status == 401
            status, answer = await deliver(daemon, provider, body, kept.secret)
            assert status == 202, answer
            (run_id,) = answer["run_ids"]
            run = await finished(daemon, run_id)
            assert run.status is RunStatus.SUCCEEDED, run.error
            assert run.git_revision == commit

            # Its state on the commit: running (GitHub: pending), then success. The run is
            # stored as finished before its end hooks post the last state: wait for it.
            posted = api.repositories["org/app"].statuses

            async def both_posted() -> bool:
                await daemon.commit_statuses.settled()
                return len(posted) >= 2

            await wait_for(both_posted, 30, "the run's last commit status")
            states = [s["state"] if provider == "github" else s["status"] for s in posted]
            assert states == (["pending", "success"] if provider == "github"
                              else ["running", "success"])
            for each in posted:
                assert each["sha"] == commit
                assert each["target_url"] == f"{PUBLIC}/api/runs/{run_id}/log"
                assert each.get("context", each.get("name")) == "basewatch/app"

            deleted = await run_cli(daemon, "task", "delete", "app")
            assert deleted.returncode == 0, deleted.stderr
            assert api.repositories["org/app"].hooks == {}
            assert await daemon.store.webhooks.all() == []
        finally:
            await daemon.stop()


async def test_a_bad_token_stores_nothing_a_failing_status_fails_no_run_and_by_hand(
        tmp_path, registry, base_images, docker_host, monkeypatch):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    for name in ("org/app", "org/moved"):
        Repository(tmp_path / "served", name).commit({"Dockerfile": f"FROM {reg}/base:1\n"})
    async with GitHttpServer(tmp_path / "served") as git, \
            GitHubApi(tokens={"good-token": {"all"}},
                      repositories=("org/app", "org/moved")) as api:
        git_host = f"127.0.0.1:{git.port}"
        daemon = await start(tmp_path, docker_host, reg, git_host, "github", api.api_url,
                             monkeypatch)
        context = f"{git.url('org/app.git')}#main"
        try:
            refused = await run_cli(daemon, "task", "create", "app", "--context", context,
                                    "-t", f"{reg}/app:1", "--git-access-token-env",
                                    "WRONG_TOKEN")
            assert refused.returncode != 0
            assert f"{git_host} refused the token in WRONG_TOKEN (401: Bad credentials)" \
                in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr and "not-a-token" not in refused.stderr
            assert "app" not in (await run_cli(daemon, "task", "list")).stdout
            assert await daemon.store.webhooks.all() == []
            assert api.repositories["org/app"].hooks == {}

            # The status endpoint failing: the run still succeeds, the hook still registered.
            created = await run_cli(daemon, "task", "create", "app", "--context", context,
                                    "-t", f"{reg}/app:1", "--git-access-token-env",
                                    "GIT_TOKEN", "--report-status", "true")
            assert created.returncode == 0, created.stderr
            assert len(api.repositories["org/app"].hooks) == 1
            api.fail_next(500, times=8)  # two statuses, each tried 4 times
            (run_id,) = await daemon.triggers.enqueue([task_run("app", "linux/amd64", {})])
            run = await finished(daemon, run_id)
            assert run.status is RunStatus.SUCCEEDED, run.error

            async def all_tried() -> bool:
                await daemon.commit_statuses.settled()
                return api.failures_left == 0

            await wait_for(all_tried, 60, "both statuses tried 4 times each")
            assert api.repositories["org/app"].statuses == []
            assert api.requests("POST"), "the status was tried"

            # `task update` to another repository moves the hook there.
            moved = await run_cli(daemon, "task", "update", "app", "--context",
                                  f"{git.url('org/moved.git')}#main")
            assert moved.returncode == 0, moved.stderr
            assert api.repositories["org/app"].hooks == {}
            [hook] = api.repositories["org/moved"].hooks.values()
            assert (await daemon.store.webhooks.get("app")).hook_id == hook["id"]

            # Without a token: what to enter by hand, the secret kept for the receivers.
            plain = await run_cli(daemon, "task", "create", "plain", "--context", context,
                                  "-t", f"{reg}/plain:1")
            assert plain.returncode == 0, plain.stderr
            shown = await run_cli(daemon, "task", "webhook", "plain")
            assert shown.returncode == 0, shown.stderr
            kept = await daemon.store.webhooks.get("plain")
            assert kept.hook_id is None
            assert f"URL:    {PUBLIC}/webhooks/github" in shown.stdout
            assert f"Secret: {kept.secret}" in shown.stdout
            assert "Events: Pushes, Pull requests" in shown.stdout
            assert "Content type: application/json" in shown.stdout
            again = await run_cli(daemon, "task", "webhook", "plain")
            assert f"Secret: {kept.secret}" in again.stdout, "the same secret each time"

            async def healthy():
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"{daemon.url}/healthz") as response:
                        return (await response.json())["failing_webhooks"] == {}
            await wait_for(healthy, 10, "/healthz")
            assert json.loads((await run_cli(daemon, "task", "show", "plain")).stdout)
        finally:
            await daemon.stop()
