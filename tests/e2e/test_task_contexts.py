"""Tasks whose context is a git repository (over HTTP by `git http-backend`, or a file://
remote in the config file): registered from the fetched Dockerfile, rebuilt from a fresh
fetch when their base is patched, and following the repository when its Dockerfile moves to
another base. Through the CLI, against a running daemon, the real engine and registry."""
from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_daemon import health, start_daemon, stop
from tests.e2e.test_quick_build import cli
from tests.support.git_http import GitHttpServer
from tests.support.tarballs import TarballServer, tarball
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


class Repository:
    """A work tree and the bare repository it pushes to, which the daemon fetches from."""

    def __init__(self, root: Path, name: str):
        self.work, self.bare = root / f"{name}-work", root / "served" / f"{name}.git"
        self.work.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "t@example.com")
        self.git("config", "user.name", "t")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.work), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, text in files.items():
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            (self.work / name).write_text(text)
        self.git("add", ".")
        self.git("commit", "-qm", message)
        if not self.bare.exists():
            self.bare.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "clone", "-q", "--bare", str(self.work), str(self.bare)],
                           check=True)
        else:
            self.git("push", "-q", str(self.bare), "HEAD:main")
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repository(tmp_path, registry) -> Repository:
    repository = Repository(tmp_path / "git", "app")
    repository.sha = repository.commit({
        "service/Dockerfile": f"FROM {registry.address}/base:1\nCOPY hello.txt /hello.txt\n",
        "service/hello.txt": "hello from git\n",
        "README.md": "not the context\n"}, "first")
    return repository


@pytest.fixture
def daemon(tmp_path, registry, base_images, docker_host, repository):
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    base_images.build(f"{reg}/base2:1", {"/etc/release": "base2\n"})
    config = {"poll_interval": "1s", "registries": [{"host": reg}],
              "api_token_env": "API_TOKEN", "allowed_context_hosts": ["127.0.0.1"],
              "local_contexts_root": "apps",
              # The config file is the admin's: file:// remotes are fine there.
              "tasks": [{"name": name, "image": f"{reg}/{name}:latest",
                         "context": f"file://{repository.bare}#main:service"}
                        for name in ("from-config", "from-config-2", "from-config-3")]}
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": "t0ken"})
    health(url, process)
    yield url, reg
    stop(process)


async def runs_of(url: str, task: str) -> list[dict]:
    code, out, err = await cli("task", "list-runs", "--name", task, "--top", "50", url=url,
                               token="t0ken")
    assert code == 0, err
    return [line.split() for line in out.splitlines()[1:]]


async def create_web(url: str, reg: str, server: GitHttpServer) -> dict:
    """The task `web`, created through the CLI on the served repository's service folder."""
    code, out, err = await cli("task", "create", "web", "--context",
                               f"{server.url('app.git')}#main:service",
                               "-t", f"{reg}/web:latest", url=url, token="t0ken")
    assert code == 0, err
    return json.loads(out)


async def test_a_git_task_is_built_from_a_fresh_fetch_and_rebuilt_when_its_base_is_patched(
        tmp_path, daemon, base_images, repository):
    url, reg = daemon
    async with GitHttpServer(repository.bare.parent) as server:
        task = await create_web(url, reg, server)
        assert task["context"] == f"{server.url('app.git')}#main:service"
        assert [b["reference"] for b in task["bases"]] == [f"{reg}/base:1"]

        code, out, err = await cli("task", "run", "web", url=url, token="t0ken")
        assert code == 0, out + err
        assert f"Checked out {repository.sha}" in out
        run_id = out.split()[5]
        assert await asyncio.to_thread(base_images.read_file, f"{reg}/web:latest",
                                       "/hello.txt") == "hello from git\n"
        code, out, _ = await cli("task", "show-run", "--run-id", run_id, url=url, token="t0ken")
        assert json.loads(out)["git_revision"] == repository.sha

        # The base is patched: both git tasks, the API's and the config file's, rebuild.
        await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "2\n"})

        async def rebuilt(task: str):
            return [r for r in await runs_of(url, task)
                    if "Image" in r and "Succeeded" in r]

        await wait_for(lambda: rebuilt("web"), 60, "web rebuilt on the patched base")
        await wait_for(lambda: rebuilt("from-config"), 60, "from-config rebuilt")
        for image in ("web", "from-config"):
            assert await asyncio.to_thread(base_images.read_file, f"{reg}/{image}:latest",
                                           "/etc/release") == "2\n"


async def test_a_git_task_follows_its_dockerfile_to_a_new_base(tmp_path, daemon, base_images,
                                                               repository):
    url, reg = daemon
    async with GitHttpServer(repository.bare.parent) as server:
        await create_web(url, reg, server)
        moved = repository.commit({"service/Dockerfile": f"FROM {reg}/base2:1\n"}, "new base")

        code, out, err = await cli("task", "run", "web", url=url, token="t0ken")
        assert code == 0, out + err
        assert f"Checked out {moved}" in out
        assert await asyncio.to_thread(base_images.read_file, f"{reg}/web:latest",
                                       "/etc/release") == "base2\n"
        code, out, _ = await cli("task", "show", "web", url=url, token="t0ken")
        assert [b["reference"] for b in json.loads(out)["bases"]] == [f"{reg}/base2:1"]


async def test_a_tarball_task_is_fetched_for_every_run(tmp_path, daemon, base_images):
    url, reg = daemon
    served = {"app.tar.gz": tarball({"Dockerfile": f"FROM {reg}/base:1\nCOPY v /v\n",
                                     "v": "1\n"})}
    async with TarballServer(served) as server:
        code, out, err = await cli("task", "create", "tarred", "--context",
                                   server.url("app.tar.gz"), "-t", f"{reg}/tarred:latest",
                                   url=url, token="t0ken")
        assert code == 0, err
        assert [b["reference"] for b in json.loads(out)["bases"]] == [f"{reg}/base:1"]
        for version in ("1\n", "2\n"):
            served["app.tar.gz"] = tarball({"Dockerfile": f"FROM {reg}/base:1\nCOPY v /v\n",
                                            "v": version})
            code, out, err = await cli("task", "run", "tarred", url=url, token="t0ken")
            assert code == 0, out + err
            assert await asyncio.to_thread(base_images.read_file, f"{reg}/tarred:latest",
                                           "/v") == version


async def test_a_git_context_that_cannot_be_fetched_registers_nothing(tmp_path, daemon):
    url, reg = daemon
    (tmp_path / "empty").mkdir()
    async with GitHttpServer(tmp_path / "empty") as server:
        code, _, err = await cli("task", "create", "ghost", "--context",
                                 f"{server.url('missing.git')}#main", "-t", f"{reg}/ghost:1",
                                 url=url, token="t0ken")
    assert code != 0 and "Traceback" not in err
    assert "missing.git" in err, err
    code, out, _ = await cli("task", "list", url=url, token="t0ken")
    assert "ghost" not in out
    # The config's remote tasks, fetched side by side as the daemon started, all registered.
    sources = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:] if line}
    assert {sources.get(f"from-config{n}") for n in ("", "-2", "-3")} == {"config"}, out

    code, _, err = await cli("task", "create", "local-repo", "--context",
                             f"file://{tmp_path}/git/served/app.git#main:service",
                             "-t", f"{reg}/x:1", url=url, token="t0ken")
    assert code != 0 and "file:// contexts" in err

    code, _, err = await cli("task", "create", "elsewhere", "--context",
                             "https://git.example.com/org/app.git#main", "-t", f"{reg}/x:1",
                             url=url, token="t0ken")
    assert code != 0 and "git.example.com is not in the daemon's allowed_context_hosts" in err


async def test_a_task_created_through_the_api_is_watched_at_once(tmp_path, daemon, base_images):
    """Its base, watched by no other task, is polled from the moment the task exists: a patch
    rebuilds it within a few poll intervals, not after the watcher's 30 s re-read."""
    url, reg = daemon
    await asyncio.to_thread(base_images.build, f"{reg}/lonely:1", {"/etc/release": "1\n"})
    folder = tmp_path / "apps" / "lonely-app"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(f"FROM {reg}/lonely:1\n")
    code, _, err = await cli("task", "create", "lonely", "--context", str(folder),
                             "-t", f"{reg}/lonely-app:latest", url=url, token="t0ken")
    assert code == 0, err
    await asyncio.to_thread(base_images.build, f"{reg}/lonely:1", {"/etc/release": "2\n"})

    async def rebuilt():
        return [r for r in await runs_of(url, "lonely") if "Image" in r and "Succeeded" in r]

    await wait_for(rebuilt, 15, "lonely rebuilt on its patched base")
