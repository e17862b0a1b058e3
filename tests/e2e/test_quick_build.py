"""`basewatch build` through the CLI, against a running daemon, the real engine and registry:
every context kind, --no-push, failures, a two-platform index, and bad input."""
from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.request

import pytest

from tests.e2e.test_daemon import health, start_daemon, stop
from tests.e2e.test_graph import TOKEN
from tests.e2e.test_multiarch import emulation  # noqa: F401  (a fixture)
from tests.support.git_http import GitHttpServer
from tests.support.tarballs import TarballServer, tarball

pytestmark = pytest.mark.e2e


async def cli(*args: str, url: str, cwd=None, token: str | None = TOKEN) -> tuple[int, str, str]:
    """The CLI in a subprocess, awaited, so servers in this event loop keep serving."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASEWATCH_")}
    env["BASEWATCH_URL"] = url
    if token:
        env["BASEWATCH_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "basewatch", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=180)
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def daemon(tmp_path, registry, base_images, docker_host):
    base_images.build(f"{registry.address}/base:1", {"/etc/release": "1\n"})
    config = {"poll_interval": "1h", "registries": [{"host": registry.address}],
              "api_token_env": "API_TOKEN", "max_context_bytes": 200_000,
              "allowed_context_hosts": ["127.0.0.1"]}  # the git and tarball servers here
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    health(url, process)
    yield url, registry.address
    stop(process)


def tag_exists(registry: str, repository: str, tag: str) -> bool:
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}",
                                     method="HEAD", headers={"Accept": ", ".join((
                                         "application/vnd.oci.image.index.v1+json",
                                         "application/vnd.oci.image.manifest.v1+json",
                                         "application/vnd.docker.distribution.manifest.v2+json"))})
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except urllib.error.HTTPError:
        return False


async def test_local_folder_with_dockerignore(tmp_path, daemon, base_images):
    url, reg = daemon
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text(f"FROM {reg}/base:1\nCOPY . /ctx\nRUN ls /ctx\n")
    (app / "kept.txt").write_text("kept\n")
    (app / "secret.txt").write_text("do not send\n")
    (app / ".dockerignore").write_text("secret.txt\n")
    code, out, err = await cli("build", "-t", f"{reg}/quick:{{{{.Run.ID}}}}", "-t",
                               f"{reg}/quick:latest", str(app), url=url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Queued a run with ID: ca1"
    assert "kept.txt" in out and "secret.txt" not in out, "the log streamed the build"
    assert f"Pushed {reg}/quick:ca1: digest: sha256:" in out
    assert lines[-1].startswith("Run ID: ca1 was successful after ")
    assert await asyncio.to_thread(base_images.read_file, f"{reg}/quick:latest",
                                   "/ctx/kept.txt") == "kept\n"
    assert await asyncio.to_thread(base_images.read_file, f"{reg}/quick:latest",
                                   "/ctx/secret.txt") is None

    code, out, _ = await cli("task", "show-run", "--run-id", "ca1", url=url)
    shown = json.loads(out)
    assert (shown["type"], shown["trigger"], shown["task"]) == ("QuickBuild", "Manual", None)

    code, out, err = await cli("build", "--no-push", "-t", f"{reg}/never:1", str(app), url=url)
    assert code == 0, err
    assert not tag_exists(reg, "never", "1"), "--no-push pushes nothing"


async def test_git_repository_over_http_with_branch_and_folder(tmp_path, daemon, base_images):
    url, reg = daemon
    work = tmp_path / "work"
    work.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (work / "README").write_text("main branch\n")
    git("add", ".")
    git("commit", "-qm", "main")
    git("checkout", "-q", "-b", "release")
    (work / "service").mkdir()
    (work / "service" / "Dockerfile").write_text(f"FROM {reg}/base:1\nCOPY version /version\n")
    (work / "service" / "version").write_text("release 2\n")
    git("add", ".")
    git("commit", "-qm", "release")
    sha = git("rev-parse", "HEAD")
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "app.git")],
                   check=True)
    async with GitHttpServer(served) as server:
        context = f"{server.url('app.git')}#release:service"
        code, out, err = await cli("build", "-t", f"{reg}/from-git:latest", context, url=url)
    assert code == 0, err + out
    assert f"Checked out {sha}" in out
    assert await asyncio.to_thread(base_images.read_file, f"{reg}/from-git:latest",
                                   "/version") == "release 2\n"
    code, out, _ = await cli("task", "show-run", "--run-id", "ca1", url=url)
    assert json.loads(out)["git_revision"] == sha


async def test_tarball_url_and_failing_build(tmp_path, daemon, base_images):
    url, reg = daemon
    archive = tarball({"Dockerfile": f"FROM {reg}/base:1\nCOPY hello /hello\n",
                       "hello": "from a tarball\n",
                       "broken/Dockerfile": f"FROM {reg}/base:1\nRUN exit 9\n"})
    async with TarballServer({"ctx.tar.gz": archive}) as server:
        served = server.url("ctx.tar.gz")
        code, out, err = await cli("build", "-t", f"{reg}/from-tar:latest", served, url=url)
        assert code == 0, err + out
        assert await asyncio.to_thread(base_images.read_file, f"{reg}/from-tar:latest",
                                       "/hello") == "from a tarball\n"
        code, out, err = await cli("build", "-f", "broken/Dockerfile", "-t",
                                   f"{reg}/broken:latest", served, url=url)
        assert code == 1
        assert "returned a non-zero code: 9" in out and "Status: Failed" in err
        assert "Traceback" not in err


async def test_two_platforms_make_one_index(tmp_path, daemon, base_images, emulation):  # noqa: F811
    url, reg = daemon
    await asyncio.to_thread(base_images.build_multi_platform, f"{reg}/multi:1",
                            ["linux/amd64", "linux/arm64"], {"/etc/release": "multi\n"})
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text(f"FROM {reg}/multi:1\nRUN uname -m > /built-on\n")
    code, out, err = await cli("build", "--platform", "linux/amd64,linux/arm64", "-t",
                               f"{reg}/both:1", str(app), url=url)
    assert code == 0, err + out
    request = urllib.request.Request(
        f"http://{reg}/v2/both/manifests/1",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        index = json.load(response)
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
    for platform, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        pulled = await asyncio.to_thread(
            lambda: base_images.client.images.pull(f"{reg}/both", tag="1", platform=platform))
        assert pulled.attrs["Architecture"] == platform.split("/")[1]
        container = base_images.client.containers.create(pulled.id, command=["true"],
                                                         network_mode="none")
        try:
            stream, _ = container.get_archive("/built-on")
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                assert tar.extractfile(tar.getmembers()[0]).read().decode() == f"{machine}\n"
        finally:
            container.remove(force=True)


async def test_bad_input_gets_a_clear_message(tmp_path, daemon):
    url, reg = daemon
    empty = tmp_path / "empty"
    empty.mkdir()
    big = tmp_path / "big"
    big.mkdir()
    (big / "Dockerfile").write_text("FROM scratch\n")
    (big / "blob").write_bytes(os.urandom(400_000))
    ok = tmp_path / "ok"
    ok.mkdir()
    (ok / "Dockerfile").write_text("FROM scratch\n")
    cases = [
        (("build", "-t", f"{reg}/x:1", str(tmp_path / "missing")), "missing"),
        (("build", "-t", f"{reg}/x:1", str(empty)), "Dockerfile"),
        (("build", "-t", f"{reg}/x:1", str(big)), "larger than the daemon's limit"),
        (("build", "--platform", "linux", "-t", f"{reg}/x:1", str(ok)), "os/arch"),
        (("build", "--platform", "windows/amd64", "-t", f"{reg}/x:1", str(ok)), "Linux engine"),
        (("build", str(ok)), "give at least one image"),
        (("build", "-t", f"{reg}/x:1", "https://example.invalid/not-a-context"), "cannot tell what"),
        (("build", "-t", f"{reg}/x:1", f"file://{tmp_path}/repo.git"), "file:// contexts"),
        (("build", "-t", f"{reg}/x:1", "http://localhost:1/app.tar.gz"),
         "localhost is not in the daemon's allowed_context_hosts (127.0.0.1)"),
    ]
    for args, message in cases:
        code, out, err = await cli(*args, url=url)
        assert code == 2, (args, out, err)
        assert err.startswith("basewatch: error: ") and message in err, (args, err)
        assert "Traceback" not in err

    # A tarball that climbs out of its folder, sent straight to the API.
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        for name in ("Dockerfile", "../../escaped"):
            info = tarfile.TarInfo(name)
            info.size = 5
            tar.addfile(info, io.BytesIO(b"FROM "))
    request = urllib.request.Request(
        f"{url}/api/builds", data=evil.getvalue(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/gzip",
                 "X-Basewatch-Build": json.dumps({"image": [f"{reg}/x:1"]})})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert "unsafe build context" in json.load(refused.value)["error"]
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()

    # The daemon's own folders are not the caller's to name.
    request = urllib.request.Request(
        f"{url}/api/builds", method="POST", headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        data=json.dumps({"image": [f"{reg}/x:1"], "context_path": "/etc"}).encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert "context_path is not accepted" in json.load(refused.value)["error"]

    code, _, err = await cli("build", "-t", f"{reg}/x:1", str(ok), url=url, token="wrong")
    assert code == 2 and "(HTTP 401)" in err


async def test_a_context_download_that_hangs_counts_against_the_timeout(tmp_path, daemon):
    url, reg = daemon
    stalled, release = asyncio.Event(), asyncio.Event()

    class StallingServer(TarballServer):
        async def _serve(self, request):
            stalled.set()
            await release.wait()  # no answer while the run lasts
            return await super()._serve(request)

    async with StallingServer({}) as server:
        code, out, err = await cli("build", "--timeout", "3", "-t", f"{reg}/late:1",
                                   server.url("ctx.tar.gz"), url=url)
        release.set()
    assert stalled.is_set()
    assert code == 1 and "Status: Timeout" in err, out + err
    assert "the run exceeded its timeout of 3s" in out + err
