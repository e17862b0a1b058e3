"""Fetching build contexts over real transports: git over file:// and smart HTTP, tarballs over HTTP."""
from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from basewatch.builder.contexts.fetch import fetch_git_context, fetch_tarball_context
from basewatch.context_spec import ContextError, context_dir, parse_context
from tests.support.git_http import GitHttpServer
from tests.support.tarballs import tarball
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

MiB = 1 << 20


def git(*args: str, cwd: Path) -> str:
    # Identity given here: the machine's own git config is not the test's business.
    command = ["git", "-c", "user.name=basewatch tests", "-c", "user.email=tests@basewatch.invalid",
               "-c", "init.defaultBranch=main", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit_files(work: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


@dataclass
class Repository:
    bare: Path    # served/app.git: what clients clone
    first: str    # main's first commit, also tag v1
    main: str     # main's tip
    feature: str  # branch feature's tip


@pytest.fixture
def repository(tmp_path) -> Repository:
    """main: Dockerfile, app/ (Dockerfile, version.txt), escape -> /etc; feature adds feature/."""
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    first = commit_files(work, {"Dockerfile": "FROM scratch\n", "app/Dockerfile": "FROM scratch\n",
                                "app/version.txt": "one\n"}, "first")
    git("tag", "v1", cwd=work)
    os.symlink("/etc", work / "escape")
    main = commit_files(work, {"app/version.txt": "two\n"}, "second")
    git("checkout", "-q", "-b", "feature", cwd=work)
    feature = commit_files(work, {"feature/Dockerfile": "FROM scratch\nLABEL feature=1\n"},
                           "feature")
    git("checkout", "-q", "main", cwd=work)
    bare = tmp_path / "served" / "app.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    return Repository(bare, first, main, feature)


@pytest.fixture
async def git_server(repository):
    async with GitHttpServer(repository.bare.parent) as server:
        yield server


def file_url(repository: Repository) -> str:
    return repository.bare.as_uri()


# --- git over file:// -------------------------------------------------------------------

async def test_default_branch_is_cloned_shallow(repository, tmp_path):
    spec = parse_context(file_url(repository))
    destination = tmp_path / "run" / "context"
    assert await fetch_git_context(spec, destination) == repository.main
    assert context_dir(spec, destination) == destination
    assert (destination / "Dockerfile").is_file()
    assert (destination / "app/version.txt").read_text() == "two\n"
    assert git("rev-list", "--count", "HEAD", cwd=destination) == "1"  # --depth 1


async def test_branch_and_subfolder(repository, tmp_path):
    spec = parse_context(file_url(repository) + "#feature:feature")
    destination = tmp_path / "context"
    assert await fetch_git_context(spec, destination) == repository.feature
    assert (context_dir(spec, destination) / "Dockerfile").read_text().endswith("feature=1\n")


async def test_tag_and_default_branch_subfolder(repository, tmp_path):
    tag = parse_context(file_url(repository) + "#v1:app")
    assert await fetch_git_context(tag, tmp_path / "tag") == repository.first
    assert (context_dir(tag, tmp_path / "tag") / "version.txt").read_text() == "one\n"
    default = parse_context(file_url(repository) + "#:app")
    assert await fetch_git_context(default, tmp_path / "default") == repository.main
    assert (context_dir(default, tmp_path / "default") / "version.txt").read_text() == "two\n"


async def test_a_commit_falls_back_to_a_full_fetch(repository, tmp_path):
    spec = parse_context(f"{file_url(repository)}#{repository.first[:10]}:app")
    destination = tmp_path / "context"
    assert await fetch_git_context(spec, destination) == repository.first
    assert (context_dir(spec, destination) / "version.txt").read_text() == "one\n"


@pytest.mark.parametrize("suffix, message", [
    ("#nope", "git could not fetch .*#nope: .*Remote branch nope not found"),
    ("#0123456789abcdef", "git could not fetch .*#0123456789abcdef: "),
    ("#main:missing", "there is no folder 'missing' in"),
    ("#main:Dockerfile", "there is no folder 'Dockerfile' in"),
    ("#main:escape", "the folder 'escape' of .* leads outside the repository"),
])
async def test_bad_refs_and_folders(repository, tmp_path, suffix, message):
    destination = tmp_path / "run" / "context"
    with pytest.raises(ContextError, match=message):
        await fetch_git_context(parse_context(file_url(repository) + suffix), destination)
    assert not destination.exists()


async def test_a_missing_repository_quotes_git(tmp_path):
    destination = tmp_path / "context"
    destination.mkdir()  # an empty folder given by the caller stays, emptied
    with pytest.raises(ContextError, match="git could not fetch file://.*nowhere.git: fatal: .*does not appear to be a git"):
        await fetch_git_context(parse_context((tmp_path / "nowhere.git").as_uri()), destination)
    assert destination.is_dir() and not any(destination.iterdir())


# --- git over smart HTTP (git http-backend) ----------------------------------------------

async def test_clone_over_http_with_branch_and_subfolder(repository, git_server, tmp_path):
    spec = parse_context(git_server.url("app.git") + "#feature:feature")
    destination = tmp_path / "context"
    assert await fetch_git_context(spec, destination) == repository.feature
    assert (context_dir(spec, destination) / "Dockerfile").is_file()
    assert any("git-upload-pack" in request for request in git_server.requests)


async def test_clone_over_http_default_branch_and_commit(repository, git_server, tmp_path):
    url = git_server.url("app.git")
    assert await fetch_git_context(parse_context(url + "#:app"), tmp_path / "a") == repository.main
    commit = parse_context(f"{url}#{repository.first}:app")
    assert await fetch_git_context(commit, tmp_path / "b") == repository.first
    assert (tmp_path / "b/app/version.txt").read_text() == "one\n"


async def test_missing_repository_over_http(git_server, tmp_path):
    with pytest.raises(ContextError, match="git could not fetch http://.*/other.git: .*not found"):
        await fetch_git_context(parse_context(git_server.url("other.git")), tmp_path / "c")
    assert not (tmp_path / "c").exists()


async def test_a_server_that_hangs_times_out_and_git_is_stopped(tmp_path):
    release = asyncio.Event()
    waiting: list[web.Request] = []

    async def hang(request):
        waiting.append(request)
        await release.wait()
        return web.Response(status=503)

    runner, port = await serve({"/{path:.*}": hang})
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ContextError, match="took longer than 1s"):
            await fetch_git_context(parse_context(f"http://127.0.0.1:{port}/slow.git"),
                                    tmp_path / "context", timeout=1)
        assert loop.time() - started < 5
        assert not (tmp_path / "context").exists()

        async def connection_closed():  # git's HTTP helper was killed with it
            return waiting and waiting[0].transport is None
        await wait_for(connection_closed, 5, "git's connection to close", interval=0.05)
    finally:
        release.set()
        await runner.cleanup()


# --- tarballs over HTTP ----------------------------------------------------------------

async def serve(routes: dict) -> tuple[web.AppRunner, int]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def tarballs():
    context = tarball({"Dockerfile": b"FROM scratch\n", "src/app.txt": b"hello\n"})
    big = tarball({"Dockerfile": b"FROM scratch\n", "noise.bin": os.urandom(2 * MiB)})

    async def chunked(request):  # no Content-Length: the limit must hold while streaming
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(big), 64 * 1024):
            await response.write(big[start:start + 64 * 1024])
        await response.write_eof()
        return response

    def static(body: bytes):
        async def handler(request):
            return web.Response(body=body)
        return handler

    runner, port = await serve({
        "/ctx.tar.gz": static(context),
        "/big.tar.gz": static(big),
        "/chunked.tar.gz": chunked,
        "/page.tar.gz": static(b"<html>not a tarball</html>"),
    })
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_tarball_is_fetched_and_extracted(tarballs, tmp_path):
    spec = parse_context(f"{tarballs}/ctx.tar.gz?signature=abc")
    destination = tmp_path / "run" / "context"
    async with aiohttp.ClientSession() as session:
        await fetch_tarball_context(spec.location, destination, MiB, session)
    assert (context_dir(spec, destination) / "src/app.txt").read_bytes() == b"hello\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["context"]  # no temp left


@pytest.mark.parametrize("path, message", [
    ("/missing.tar.gz", "downloading http://.*/missing.tar.gz failed: HTTP 404 Not Found"),
    ("/big.tar.gz", "big.tar.gz is larger than the limit of 1.0 MiB"),
    ("/chunked.tar.gz", "chunked.tar.gz is larger than the limit of 1.0 MiB"),
    ("/page.tar.gz", "not a readable tar or tar.gz archive"),
])
async def test_tarball_errors(tarballs, tmp_path, path, message):
    destination = tmp_path / "run" / "context"
    with pytest.raises(ContextError, match=message):
        await fetch_tarball_context(tarballs + path, destination, MiB)
    assert list((tmp_path / "run").iterdir()) == []  # no context, no temp file


async def test_unreachable_tarball_host(tmp_path):
    runner, port = await serve({})
    await runner.cleanup()  # the port is free again: nothing listens there
    with pytest.raises(ContextError, match="could not download http://127.0.0.1:"):
        await fetch_tarball_context(f"http://127.0.0.1:{port}/ctx.tar.gz", tmp_path / "c", MiB)
