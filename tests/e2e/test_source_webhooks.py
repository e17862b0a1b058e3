"""Git server webhooks on a live daemon: deliveries POSTed over HTTP to /webhooks/<provider>,
their bodies the providers' published examples (tests/fixtures/webhooks) pointed at local
repositories served by `git http-backend` and signed as each provider signs, built on the real
engine and pushed to the real registry.

One daemon, registry and git server serve the whole module (git_poll_interval 2 s, so polling
runs beside the webhooks as it does in production); each test has repositories and tasks of its
own. A commit a webhook names is first kept on a side ref (refs/keep/...), not on the branch:
the branch moving is what polling would see, and the test decides when the poll sees it.
"""
from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import stack  # scripts/, put on sys.path by tests/conftest.py
from busybox_images import BaseImages

from basewatch.config import Config, RegistrySettings, TaskSettings
from basewatch.daemon import Daemon
from basewatch.models import Run, RunStatus, SourceCommit, Trigger
from tests.support.git_http import GitHttpServer
from tests.support.inprocess_daemon import free_port
from tests.support.waiting import wait_for
from tests.support.webhook_bodies import (ZERO, azure_push, basic_auth, gitea_push, github_ping,
                                          github_pull_request, github_push, gitlab_push,
                                          hmac_hex, hub_signature)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SECRETS = {"GH_HOOK_SECRET": "github-secret-0f3a", "GL_HOOK_TOKEN": "gitlab-token-77c1",
           "AZ_HOOK_PASSWORD": "azure-password-19be", "GT_HOOK_SECRET": "gitea-secret-a2d4"}
# repository (served as NAME.git) -> the task's settings besides its context and image
REPOSITORIES = {
    "gh-app": {"webhook_secret_env": "GH_HOOK_SECRET"},
    "gh-pr": {"webhook_secret_env": "GH_HOOK_SECRET", "pull_request_trigger": {"enabled": True}},
    "gl-app": {"webhook_secret_env": "GL_HOOK_TOKEN"},
    "az-app": {"webhook_secret_env": "AZ_HOOK_PASSWORD"},
    "gt-app": {"webhook_secret_env": "GT_HOOK_SECRET"},
}


class Repository:
    """A bare repository the server serves and a work tree that commits to it."""

    def __init__(self, served: Path, name: str):
        self.name = name
        self.work, self.bare = served.parent / f"{name}-work", served / f"{name}.git"
        self.work.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        self.url = ""  # set once the server has a port

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(["git", "-C", str(cwd or self.work), "-c", "user.email=t@e.x",
                               "-c", "user.name=t", *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    def commit(self, files: dict[str, str], ref: str) -> str:
        """A commit with `files` on top of the work tree's HEAD, pushed to `ref` only."""
        for name, text in files.items():
            (self.work / name).write_text(text)
        self.git("add", ".")
        self.git("commit", "-qm", f"change to {ref}")
        self.git("push", "-q", "-f", str(self.bare), f"HEAD:{ref}")
        return self.git("rev-parse", "HEAD")

    def pending(self, version: str) -> str:
        """A commit of main's next version, in the repository but not yet on main."""
        return self.commit({"version.txt": version}, f"refs/keep/{version.strip()}")

    def move_main(self, sha: str) -> None:
        self.git("update-ref", "refs/heads/main", sha, cwd=self.bare)


class Stack:
    def __init__(self, daemon: Daemon, registry: str, images: BaseImages,
                 repositories: dict[str, Repository]):
        self.daemon, self.registry, self.images = daemon, registry, images
        self.repositories = repositories
        self.url = f"http://{daemon.config.listen}"

    async def post(self, provider: str, body: bytes, headers: dict[str, str]
                   ) -> tuple[int, dict]:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{self.url}/webhooks/{provider}", data=body, headers={
                    "Content-Type": "application/json", **headers}) as response:
                return response.status, await response.json()

    async def runs(self, task: str | None = None) -> list[Run]:
        return await self.daemon.store.runs.list(task=task, top=100)

    async def finished(self, run_id: str) -> Run:
        async def done():
            run = await self.daemon.store.runs.get(run_id)
            return run if run.status.finished else None

        return await wait_for(done, 120, f"run {run_id} to finish")

    async def file_in(self, image: str, path: str) -> str | None:
        return await asyncio.to_thread(self.images.read_file, image, path)

    async def polled(self, repository: Repository, sha: str) -> None:
        async def seen():
            heads = await self.daemon.store.git_heads.heads()
            return heads.get(repository.url, {}).get("main") == sha

        await wait_for(seen, 30, f"a poll of {repository.name} to see main at {sha[:12]}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(docker_host, docker_client, tmp_path_factory):
    root = tmp_path_factory.mktemp("source-webhooks")
    registry = stack.Registry(root / "registry", stack.free_port()).start()
    images = BaseImages(docker_client, root / "base-images")
    reg = registry.address
    await asyncio.to_thread(images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    repositories = {name: Repository(root / "served", name) for name in REPOSITORIES}
    for repository in repositories.values():
        repository.commit({"Dockerfile": f"FROM {reg}/base:1\nCOPY version.txt /version.txt\n",
                           "version.txt": "0\n"}, "refs/heads/main")
    with pytest.MonkeyPatch.context() as environment:
        for variable, secret in SECRETS.items():
            environment.setenv(variable, secret)
        async with GitHttpServer(root / "served") as server:
            tasks = []
            for name, settings in REPOSITORIES.items():
                repositories[name].url = server.url(f"{name}.git")
                tasks.append(TaskSettings(
                    name=name, context=f"{repositories[name].url}#main",
                    image=[f"{reg}/{name}:{{{{.Run.Commit}}}}", f"{reg}/{name}:latest",
                           f"{reg}/{name}:{{{{.Run.Branch}}}}-$Commit"],
                    **settings))
            config = Config(state_dir=root / "state", listen=f"127.0.0.1:{free_port()}",
                            poll_interval=3600, git_poll_interval=2,
                            allowed_context_hosts=["127.0.0.1"],
                            registries=[RegistrySettings(host=reg)], tasks=tasks)
            daemon = Daemon(config, docker_host)
            await daemon.start()
            try:
                live = Stack(daemon, reg, images, repositories)
                for repository in repositories.values():  # first sight: heads recorded
                    await live.polled(repository, repository.git("rev-parse", "HEAD"))
                yield live
            finally:
                await daemon.stop()
                registry.stop()


def github_headers(body: bytes, event: str = "push", delivery: str = "d-1",
                   secret: str = SECRETS["GH_HOOK_SECRET"]) -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": hub_signature(secret, body)}


# --- the tests ------------------------------------------------------------------------------

async def test_a_signed_github_push_builds_exactly_its_commit_once(live):
    app = live.repositories["gh-app"]
    sha = app.pending("1\n")
    body = github_push(app.url, sha)

    forged = github_headers(body, secret="not-the-secret")
    status, answer = await live.post("github", body, forged)
    assert (status, answer["error"]) == (401, "wrong webhook signature or token: no task's "
                                              "webhook secret verifies this delivery")
    assert await live.runs() == []

    status, answer = await live.post("github", body, github_headers(body, delivery="push-1"))
    assert status == 202, answer
    (run_id,) = answer["run_ids"]
    run = await live.finished(run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.task, run.trigger, run.source_commit, run.git_revision) == (
        "gh-app", Trigger.COMMIT, SourceCommit(sha, "main"), sha)
    image = f"{live.registry}/gh-app:{sha}"
    assert {output.image for output in run.outputs} == {
        image, f"{live.registry}/gh-app:latest", f"{live.registry}/gh-app:main-{sha}"}
    assert await live.file_in(image, "/version.txt") == "1\n"

    # Delivered again: answered as a duplicate. Another delivery of the same commit: its run
    # exists. The branch moving to the commit, seen by a poll: no second run either.
    status, again = await live.post("github", body, github_headers(body, delivery="push-1"))
    assert (status, again["duplicate"], again["run_ids"]) == (202, True, [])
    status, other = await live.post("github", body, github_headers(body, delivery="push-2"))
    assert (status, other["run_ids"]) == (202, [])
    assert "has a run of gh-app already" in other["events"][0]["reason"]
    changed = live.daemon.metrics.registry.get_sample_value
    moves = changed("basewatch_git_polls_total", {"result": "changed"}) or 0
    app.move_main(sha)
    await live.polled(app, sha)
    assert changed("basewatch_git_polls_total", {"result": "changed"}) == moves + 1
    assert [r.id for r in await live.runs()] == [run_id]
    assert changed("basewatch_source_events_total", {
        "provider": "github", "event": "push", "result": "duplicate"}) == 1


async def test_a_pull_request_builds_its_head_only_with_the_trigger_on(live):
    off, on = live.repositories["gh-app"], live.repositories["gh-pr"]
    before = len(await live.runs())
    body = github_pull_request(off.url, 2, off.git("rev-parse", "HEAD"))
    status, answer = await live.post("github", body, github_headers(body, "pull_request",
                                                                    "pr-off"))
    assert (status, answer["run_ids"]) == (202, [])
    assert answer["events"][0]["reason"].startswith("the pull-request trigger is off for task "
                                                    "gh-app")

    # The head is only on the pull request's ref, as a fork's branch would be.
    on.git("checkout", "-q", "-b", "changes")
    head = on.commit({"version.txt": "pr\n"}, "refs/heads/changes")
    on.git("update-ref", "refs/pull/2/head", head, cwd=on.bare)
    on.git("update-ref", "-d", "refs/heads/changes", cwd=on.bare)
    body = github_pull_request(on.url, 2, head)
    status, answer = await live.post("github", body, github_headers(body, "pull_request",
                                                                    "pr-on"))
    assert status == 202, answer
    (run_id,) = answer["run_ids"]
    run = await live.finished(run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.task, run.trigger, run.git_revision) == ("gh-pr", Trigger.PULL_REQUEST, head)
    assert run.source_commit == SourceCommit(head, "changes", 2, "main", "refs/pull/2/head")
    assert await live.file_in(f"{live.registry}/gh-pr:{head}", "/version.txt") == "pr\n"
    assert f"{live.registry}/gh-pr:changes-{head}" in {output.image for output in run.outputs}
    assert len(await live.runs()) == before + 1


@pytest.mark.parametrize("provider, repository, build, sign", [
    ("gitlab", "gl-app", gitlab_push,
     lambda body, delivery: {"X-Gitlab-Event": "Push Hook", "Idempotency-Key": delivery,
                             "X-Gitlab-Token": SECRETS["GL_HOOK_TOKEN"]}),
    ("azure-devops", "az-app", azure_push,
     lambda body, delivery: {"Authorization": basic_auth(SECRETS["AZ_HOOK_PASSWORD"])}),
    ("gitea", "gt-app", gitea_push,
     lambda body, delivery: {"X-Gitea-Event": "push", "X-Gitea-Delivery": delivery,
                             "X-Gitea-Signature": hmac_hex(SECRETS["GT_HOOK_SECRET"], body)}),
])
async def test_each_provider_rebuilds_a_task_once(live, provider, repository, build, sign):
    repo = live.repositories[repository]
    sha = repo.pending(f"{provider}\n")
    body = build(repo.url, sha)
    status, answer = await live.post(provider, body, sign(body, f"{provider}-1"))
    assert status == 202, answer
    (run_id,) = answer["run_ids"]
    run = await live.finished(run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert (run.task, run.trigger, run.git_revision) == (repository, Trigger.COMMIT, sha)
    assert await live.file_in(f"{live.registry}/{repository}:{sha}",
                              "/version.txt") == f"{provider}\n"
    status, again = await live.post(provider, body, sign(body, f"{provider}-1"))
    assert (status, again["run_ids"]) == (202, [])
    assert [r.id for r in await live.runs(repository)] == [run_id]


async def test_a_ping_a_tag_push_and_a_deleted_branch_queue_nothing(live):
    app = live.repositories["gh-app"]
    before = len(await live.runs())
    ping = github_ping(app.url)
    status, answer = await live.post("github", ping, github_headers(ping, "ping", "ping-1"))
    assert (status, answer) == (200, {"ping": "ok", "tasks": 2})
    head = app.git("rev-parse", "HEAD")
    tag = github_push(app.url, head, ref="refs/tags/v1")
    deleted_tag = github_push(app.url, ZERO, ref="refs/tags/simple-tag",
                              fixture="github-push-tag-deleted.json")
    deleted_branch = github_push(app.url, ZERO, fixture="github-push-tag-deleted.json")
    for body, reason in ((tag, "'refs/tags/v1' is a tag"),
                         (deleted_tag, "'refs/tags/simple-tag' is a tag"),
                         (deleted_branch, "branch main was deleted")):
        status, answer = await live.post("github", body, github_headers(body, delivery=reason))
        assert (status, answer["run_ids"], answer["events"][0]["reason"]) == (202, [], reason)
    assert len(await live.runs()) == before


async def test_bad_deliveries_get_a_clear_answer_and_queue_nothing(live):
    app = live.repositories["gh-app"]
    before = len(await live.runs())
    body = github_push(app.url, app.pending("never\n"))
    not_json = b'{"ref": "refs/heads/main", '
    gitlab = gitlab_push(live.repositories["gl-app"].url, ZERO)
    for provider, data, headers, expected in [
        ("github", not_json, github_headers(not_json), (400, "the body is not valid JSON")),
        ("github", body, {"X-GitHub-Event": "push"},
         (401, "missing X-Hub-Signature-256: set a secret on the GitHub webhook")),
        ("github", body, {"X-Hub-Signature-256": github_headers(body)["X-Hub-Signature-256"]},
         (400, "the X-GitHub-Event header is missing")),
        ("gitlab", gitlab, {"X-Gitlab-Token": SECRETS["GL_HOOK_TOKEN"]},
         (400, "the X-Gitlab-Event header is missing")),
    ]:
        status, answer = await live.post(provider, data, headers)
        assert (status, answer["error"]) == expected
    status, answer = await live.post("github", body, github_headers(body, "issues"))
    assert (status, answer) == (202, {"run_ids": [], "reason": "github event 'issues' is not "
                                                              "one basewatch builds on"})
    assert len(await live.runs()) == before

