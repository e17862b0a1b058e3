"""What a task or a quick build may name, tried as a hostile API token holder would, against a
running daemon, the real engine and registry (issue 8, items 1 and 7 and the Low items on
schemes, task names and paths in errors)."""
from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import sqlite3
import tarfile
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_daemon import health, start_daemon, stop
from tests.e2e.test_quick_build import cli, tag_exists
from tests.e2e.test_task_contexts import Repository
from tests.support.git_http import GitHttpServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

TOKEN = "contexts-t0ken"


class Api:
    """The daemon's API, as a token holder calls it."""

    def __init__(self, url: str):
        self.url = url

    async def call(self, method: str, path: str, body: dict | None = None, *,
                   data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.url + path, json=body, data=data,
                                       headers=headers) as response:
                text = await response.text()
                return response.status, json.loads(text) if text else {}

    async def finished_run(self, run_id: str) -> dict:
        async def finished():
            status, run = await self.call("GET", f"/api/runs/{run_id}")
            return run if run["status"] not in ("Queued", "Running") else None
        return await wait_for(finished, 120, f"run {run_id} to finish")


def start(tmp_path: Path, docker_host: str, reg: str, **settings) -> tuple:
    config = {"poll_interval": "1h", "registries": [{"host": reg}], "api_token_env": "API_TOKEN",
              "allowed_context_hosts": ["127.0.0.1"], **settings}
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    health(url, process)
    return process, url


@pytest.fixture
def loot(tmp_path, registry) -> Path:
    """A Dockerfile outside any context that copies whatever context it is given."""
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "Dockerfile").write_text(f"FROM {registry.address}/base:1\nCOPY . /loot/\n")
    return evil / "Dockerfile"


@pytest.fixture
def daemon(tmp_path, registry, base_images, docker_host):
    """A daemon with the default settings: no local_contexts_root."""
    base_images.build(f"{registry.address}/base:1", {"/etc/release": "1\n"})
    process, url = start(tmp_path, docker_host, registry.address)
    yield Api(url), registry.address
    stop(process)


@pytest.fixture
def rooted(tmp_path, registry, base_images, docker_host):
    """A daemon whose API may name folders under tmp_path/shared."""
    base_images.build(f"{registry.address}/base:1", {"/etc/release": "1\n"})
    (tmp_path / "shared").mkdir()
    process, url = start(tmp_path, docker_host, registry.address,
                         local_contexts_root=str(tmp_path / "shared"))
    yield Api(url), registry.address, tmp_path / "shared"
    stop(process)


def app_folder(parent: Path, name: str, dockerfile: str) -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(dockerfile)
    (folder / "hello.txt").write_text("hello\n")
    return folder


# --- item 1: host files through the API --------------------------------------------------

async def test_the_etc_attack_is_refused_and_nothing_is_built(daemon, loot, tmp_path):
    api, reg = daemon
    for file in (str(loot), "Dockerfile"):
        status, body = await api.call("POST", "/api/tasks", {
            "name": "loot", "context": "/etc", "file": file, "image": f"{reg}/loot:1"})
        assert status == 400, body
        assert "local_contexts_root" in body["error"] or "relative" in body["error"], body
    # Not even a folder of the caller's own: without local_contexts_root the API names none.
    own = app_folder(tmp_path, "own", f"FROM {reg}/base:1\n")
    status, body = await api.call("POST", "/api/tasks", {
        "name": "own", "context": str(own), "image": f"{reg}/own:1"})
    assert status == 400 and "local_contexts_root" in body["error"], body
    assert await api.call("GET", "/api/tasks") == (200, [])
    status, _ = await api.call("POST", "/api/tasks/loot/runs", {})
    assert status == 404
    assert not await asyncio.to_thread(tag_exists, reg, "loot", "1")


async def test_a_folder_under_local_contexts_root_still_builds(rooted, base_images):
    api, reg, shared = rooted
    app = app_folder(shared, "app", f"FROM {reg}/base:1\nCOPY hello.txt /hello.txt\n")
    status, body = await api.call("POST", "/api/tasks", {
        "name": "app", "context": str(app), "image": f"{reg}/app:1"})
    assert status == 201, body
    status, run = await api.call("POST", "/api/tasks/app/runs", {})
    assert status == 202, run
    assert (await api.finished_run(run["id"]))["status"] == "Succeeded"
    assert await asyncio.to_thread(base_images.read_file, f"{reg}/app:1",
                                   "/hello.txt") == "hello\n"


async def test_api_tasks_may_not_leave_local_contexts_root(rooted, loot, tmp_path):
    api, reg, shared = rooted
    app = app_folder(shared, "app", f"FROM {reg}/base:1\n")
    (shared / "etc").symlink_to("/etc")
    (app / "Linked").symlink_to(loot)
    (app / "Inside").symlink_to("Dockerfile")  # a link that stays inside is fine
    refused = [
        {"context": "/etc"},
        {"context": str(shared / "etc")},            # a link under the root that leads out
        {"context": f"{shared}/../evil"},
        {"context": str(app), "file": str(loot)},
        {"context": str(app), "file": "../../evil/Dockerfile"},
        {"context": str(app), "file": "Linked"},
    ]
    for fields in refused:
        status, body = await api.call("POST", "/api/tasks", {
            "name": "loot", "image": f"{reg}/loot:1", **fields})
        assert status == 400, (fields, body)
        # It names what the caller gave and the root the admin chose, no other host path.
        shown = body["error"].replace(str(shared), "")
        for given in fields.values():
            shown = shown.replace(given, "")
        assert str(tmp_path) not in shown, body
    status, body = await api.call("POST", "/api/tasks", {
        "name": "inside", "context": str(app), "file": "Inside", "image": f"{reg}/in:1"})
    assert status == 201, body
    status, body = await api.call("PATCH", "/api/tasks/inside", {"file": "Linked"})
    assert status == 400, body
    status, body = await api.call("PATCH", "/api/tasks/inside", {"context": "/etc"})
    assert status == 400, body
    assert [t["name"] for t in (await api.call("GET", "/api/tasks"))[1]] == ["inside"]


def upload(files: dict[str, str], links: dict[str, str] | None = None) -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return archive.getvalue()


async def test_a_quick_build_file_stays_inside_its_upload(daemon, loot, tmp_path):
    api, reg = daemon
    context = upload({"Dockerfile": f"FROM {reg}/base:1\n"})
    for file in (str(loot), "../evil/Dockerfile", "../../../../../../" + str(loot)):
        status, body = await api.call(
            "POST", "/api/builds", data=context, headers={
                "Content-Type": "application/gzip",
                "X-Basewatch-Build": json.dumps({"file": file, "image": [f"{reg}/loot:1"]})})
        assert status == 400, (file, body)
    status, body = await api.call("POST", "/api/builds", {
        "context_url": "http://127.0.0.1:1/app.git", "file": str(loot),
        "image": [f"{reg}/loot:1"]})
    assert status == 400, body
    # An upload without the Dockerfile it names is refused at once, without the daemon's paths.
    status, body = await api.call(
        "POST", "/api/builds", data=context, headers={
            "Content-Type": "application/gzip",
            "X-Basewatch-Build": json.dumps({"file": "sub/Dockerfile", "image": [f"{reg}/x:1"]})})
    assert status == 400 and "sub/Dockerfile" in body["error"], body
    assert str(tmp_path) not in body["error"], body
    assert (await api.call("GET", "/api/runs"))[1] == []
    assert not await asyncio.to_thread(tag_exists, reg, "loot", "1")


async def test_a_fetched_dockerfile_that_links_out_of_its_repository_is_refused(
        daemon, private, loot):
    """git checks out symbolic links as they are: one may point anywhere on the daemon's host."""
    api, reg = daemon
    (private.work / "Linked").symlink_to(loot)
    private.commit({}, "a link out")
    async with GitHttpServer(private.bare.parent) as server:
        context = server.url("private.git") + "#main"
        status, body = await api.call("POST", "/api/tasks", {
            "name": "linked", "context": context, "file": "Linked", "image": f"{reg}/x:1"})
        assert status == 400 and "leads outside the build context" in body["error"], body
        status, run = await api.call("POST", "/api/builds", {
            "context_url": context, "file": "Linked", "image": [f"{reg}/x:1"]})
        assert status == 202, run
        finished = await api.finished_run(run["id"])
    assert finished["status"] == "Error", finished
    assert "leads outside the build context" in finished["error"], finished


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_config_tasks_name_their_dockerfile_inside_the_context(tmp_path, registry,
                                                                     docker_host, loot):
    reg = registry.address
    app = app_folder(tmp_path / "apps", "app", f"FROM {reg}/base:1\n")
    (app / "Linked").symlink_to(loot)
    for file in (str(loot), "../../evil/Dockerfile"):
        config = tmp_path / f"bad-{len(file)}.yml"
        config.write_text(json.dumps({"tasks": [
            {"name": "loot", "context": "apps/app", "file": file, "image": f"{reg}/x:1"}]}))
        code, out, err = await cli("check-config", str(config), url="http://unused")
        assert code != 0 and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and "tasks[0].file" in err, err
    process, url = start(tmp_path, docker_host, reg, tasks=[
        {"name": "linked", "context": "apps/app", "file": "Linked", "image": f"{reg}/x:1"}])
    output = stop(process)
    assert "task linked not registered" in output, output
    assert "leads outside the build context" in output, output


# --- item 7: git credentials -------------------------------------------------------------

SECRET = "s3cr3t-g1t-pa55"


@pytest.fixture
def git_argv(tmp_path) -> tuple[dict, Path]:
    """The daemon's environment with a `git` first on PATH that records its arguments."""
    folder, log = tmp_path / "recording-bin", tmp_path / "git-argv.log"
    folder.mkdir()
    wrapper = folder / "git"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n'
                       f'exec {shutil.which("git")} "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}", "GIT_PASSWORD": SECRET}, log


@pytest.fixture
def private(tmp_path, registry) -> Repository:
    repository = Repository(tmp_path / "git", "private")
    repository.commit({"Dockerfile": f"FROM {registry.address}/base:1\nCOPY . /src/\n",
                       "hello.txt": "hello from a private repository\n"}, "first")
    return repository


def database_text(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "state" / "basewatch.db") as db:
        return "\n".join(db.iterdump())


async def test_a_git_context_is_built_without_its_dot_git(tmp_path, registry, base_images,
                                                          docker_host, private):
    """BuildKit leaves .git out of a git context: its config names the remote (and any
    credentials in it), and COPY . would push it."""
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    async with GitHttpServer(private.bare.parent) as server:
        process, url = await asyncio.to_thread(start, tmp_path, docker_host, reg)
        try:
            api = Api(url)
            status, run = await api.call("POST", "/api/builds", {
                "context_url": server.url("private.git") + "#main", "image": [f"{reg}/pub:1"]})
            assert status == 202, run
            assert (await api.finished_run(run["id"]))["status"] == "Succeeded"
        finally:
            await asyncio.to_thread(stop, process)
    for path in ("/src/hello.txt", "/src/.git/config", "/src/.git/HEAD"):
        content = await asyncio.to_thread(base_images.read_file, f"{reg}/pub:1", path)
        assert (content is not None) == (path == "/src/hello.txt"), path


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_credentials_in_a_context_url_are_refused_through_the_api(
        tmp_path, registry, base_images, docker_host, private, git_argv):
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    env, argv_log = git_argv
    async with GitHttpServer(private.bare.parent, basic_auth=("bot", SECRET)) as server:
        with_secret = server.url("private.git").replace("://", f"://bot:{SECRET}@") + "#main"
        token_only = server.url("private.git").replace("://", f"://{SECRET}@") + "#main"
        config = {"poll_interval": "1h", "registries": [{"host": reg}],
                  "api_token_env": "API_TOKEN", "allowed_context_hosts": ["127.0.0.1"]}
        process, url = start_daemon(config, tmp_path, docker_host,
                                    env={"API_TOKEN": TOKEN, **env})
        await asyncio.to_thread(health, url, process)
        try:
            api = Api(url)
            for context in (with_secret, token_only):
                status, body = await api.call("POST", "/api/tasks", {
                    "name": "private", "context": context, "image": f"{reg}/private:1"})
                assert status == 400, body
                assert "git_credentials" in body["error"] and SECRET not in json.dumps(body)
                status, body = await api.call("POST", "/api/builds", {
                    "context_url": context, "image": [f"{reg}/private:1"]})
                assert status == 400, body
                assert SECRET not in json.dumps(body)
            assert (await api.call("GET", "/api/tasks"))[1] == []
        finally:
            output = await asyncio.to_thread(stop, process)
    assert SECRET not in output
    assert SECRET not in database_text(tmp_path)
    assert not argv_log.exists() or SECRET not in argv_log.read_text()
    assert server.authorized == 0


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_a_private_repository_builds_with_git_credentials_kept_out_of_everything(
        tmp_path, registry, base_images, docker_host, private, git_argv):
    """git_credentials (the config's, by host) reach git through its environment only: not
    its arguments, the database, the API, the logs, the checkout's .git or the image."""
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    env, argv_log = git_argv
    async with GitHttpServer(private.bare.parent, basic_auth=("bot", SECRET)) as server:
        host = f"127.0.0.1:{server.port}"
        clean = server.url("private.git") + "#main"
        config = {"poll_interval": "1h", "registries": [{"host": reg}],
                  "api_token_env": "API_TOKEN", "allowed_context_hosts": ["127.0.0.1"],
                  "git_credentials": [{"host": host, "username": "bot",
                                       "password_env": "GIT_PASSWORD"}],
                  "tasks": [{"name": "from-config", "context": clean,
                             "image": f"{reg}/from-config:1"}]}
        process, url = start_daemon(config, tmp_path, docker_host,
                                    env={"API_TOKEN": TOKEN, **env})
        await asyncio.to_thread(health, url, process)
        try:
            api = Api(url)
            status, task = await api.call("POST", "/api/tasks", {
                "name": "from-api", "context": clean, "image": f"{reg}/from-api:1"})
            assert status == 201, task
            assert task["bases"][0]["reference"] == f"{reg}/base:1"
            runs = []
            for name in ("from-config", "from-api"):
                status, run = await api.call("POST", f"/api/tasks/{name}/runs", {})
                runs.append(run)
            for run in runs:
                finished = await api.finished_run(run["id"])
                assert finished["status"] == "Succeeded", finished
            shown = json.dumps([await api.call("GET", "/api/tasks"),
                                await api.call("GET", "/api/tasks/from-config"),
                                await api.call("GET", "/api/runs")])
            assert clean in shown and SECRET not in shown
        finally:
            output = await asyncio.to_thread(stop, process)
    assert server.authorized > 0, "the repository was fetched with the credentials"
    assert SECRET not in output
    assert SECRET not in database_text(tmp_path)
    recorded = argv_log.read_text()
    assert "clone" in recorded and SECRET not in recorded
    assert not any(SECRET in log.read_text() for log in (tmp_path / "state" / "logs").iterdir())
    for image in ("from-config", "from-api"):
        assert await asyncio.to_thread(base_images.read_file, f"{reg}/{image}:1",
                                       "/src/hello.txt") == "hello from a private repository\n"
        assert await asyncio.to_thread(base_images.read_file, f"{reg}/{image}:1",
                                       "/src/.git/config") is None


# --- Low: schemes, task names, the daemon's paths in errors ------------------------------

async def test_low_findings_on_what_a_task_may_name(tmp_path, daemon, private):
    api, reg = daemon
    # FILE:// is file://: the daemon's own disk, refused without allow_file_contexts.
    for scheme in ("FILE", "File"):
        status, body = await api.call("POST", "/api/tasks", {
            "name": "local-repo", "context": f"{scheme}://{private.bare}#main",
            "image": f"{reg}/x:1"})
        assert status == 400 and "file:// contexts" in body["error"], body
        status, body = await api.call("POST", "/api/builds", {
            "context_url": f"{scheme}://{private.bare}#main", "image": [f"{reg}/x:1"]})
        assert status == 400 and "file:// contexts" in body["error"], body
    # A task name is the whole name: no trailing newline.
    async with GitHttpServer(private.bare.parent) as server:
        for name in ("app\n", "app\r\n", "\napp"):
            status, body = await api.call("POST", "/api/tasks", {
                "name": name, "context": server.url("private.git") + "#main",
                "image": f"{reg}/x:1"})
            assert status == 400 and "is not a task name" in body["error"], body
        # Errors name the Dockerfile as the task does, not where the daemon fetched it to.
        private.commit({"Dockerfile": "FROM\n"}, "broken")
        for file in ("Dockerfile", "Missing", "sub/Dockerfile"):
            status, body = await api.call("POST", "/api/tasks", {
                "name": "broken", "context": server.url("private.git") + "#main",
                "file": file, "image": f"{reg}/x:1"})
            assert status == 400, body
            assert file in body["error"] and str(tmp_path) not in body["error"], body
        status, run = await api.call("POST", "/api/builds", {
            "context_url": server.url("private.git") + "#main", "image": [f"{reg}/x:1"]})
        finished = await api.finished_run(run["id"])
        assert finished["status"] == "Error" and "Dockerfile" in finished["error"], finished
        assert str(tmp_path) not in finished["error"], finished
    assert (await api.call("GET", "/api/tasks"))[1] == []


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_tasks_an_older_version_stored_are_held_to_the_same_rules(
        tmp_path, registry, base_images, docker_host, loot):
    """An upgrade does not keep the /etc attack alive: a stored API task outside
    local_contexts_root is not built, and one whose Dockerfile is now refused is ignored
    (the daemon still starts) and can be deleted."""
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    shared = tmp_path / "shared"
    app = app_folder(shared, "app", f"FROM {reg}/base:1\n")
    process, url = await asyncio.to_thread(start, tmp_path, docker_host, reg,
                                           local_contexts_root=str(shared))
    try:
        status, body = await Api(url).call("POST", "/api/tasks", {
            "name": "loot", "context": str(app), "image": f"{reg}/loot:1"})
        assert status == 201, body
    finally:
        await asyncio.to_thread(stop, process)
    with sqlite3.connect(tmp_path / "state" / "basewatch.db") as db:  # as an older version did
        [(definition,)] = db.execute("SELECT definition FROM tasks WHERE name = 'loot'")
        stored = json.loads(definition)
        db.execute("UPDATE tasks SET definition = ? WHERE name = 'loot'",
                   (json.dumps({**stored, "context": "/etc"}),))
        db.execute("INSERT INTO tasks SELECT 'abs-file', source, ?, created_at, updated_at "
                   "FROM tasks WHERE name = 'loot'",
                   (json.dumps({**stored, "name": "abs-file", "file": str(loot)}),))
    process, url = await asyncio.to_thread(start, tmp_path, docker_host, reg,
                                           local_contexts_root=str(shared))
    try:
        api = Api(url)
        assert [t["name"] for t in (await api.call("GET", "/api/tasks"))[1]] == ["loot"]
        status, run = await api.call("POST", "/api/tasks/loot/runs", {})
        assert status == 202, run
        finished = await api.finished_run(run["id"])
        assert finished["status"] == "Error", finished
        assert "not under the daemon's local_contexts_root" in finished["error"], finished
        assert (await api.call("DELETE", "/api/tasks/abs-file"))[0] == 204
        assert (await api.call("DELETE", "/api/tasks/abs-file"))[0] == 404
    finally:
        output = await asyncio.to_thread(stop, process)
    assert "task abs-file is ignored" in output, output
    assert not await asyncio.to_thread(tag_exists, reg, "loot", "1")
