"""Issue 8, items 2, 3 and 4 (registry bodies): what the daemon reaches on behalf of what a user
wrote. Builds do not share the daemon's network; context fetches and registry requests stay on
the hosts the config allows, on every hop; registry bodies are read up to a limit."""
from __future__ import annotations

import subprocess
import textwrap

import pytest
import stack  # scripts/, put on sys.path by tests/conftest.py
from aiohttp import web

from basewatch.builder.contexts.fetch import fetch_git_context, fetch_tarball_context
from basewatch.context_spec import ContextError, parse_context
from basewatch.netpolicy import HostPolicy
from tests.e2e.test_daemon import health, start_daemon, stop
from tests.e2e.test_graph import TOKEN
from tests.e2e.test_quick_build import cli
from tests.support.git_http import GitHttpServer
from tests.support.loopback import LoopbackServer
from tests.support.tarballs import tarball

pytestmark = pytest.mark.e2e


# ---------------------------------------------------------------- the build network (item 2)

def probe_dockerfile(base: str, *urls: str) -> str:
    """A build that says which of `urls` its RUN step reached. Busybox's wget crashes here when
    given -T: `timeout` bounds it from outside."""
    probes = " ; ".join(f"(timeout 10 wget -q -O - {url} >/dev/null 2>&1 && echo REACHED {url} "
                        f"|| echo UNREACHABLE {url})" for url in urls)
    return f"FROM {base}\nRUN {probes}\n"


async def build_probe(tmp_path, registry, base_images, docker_host, **settings) -> list[str]:
    """A quick build of the probe on a daemon with `settings`: what it said of each URL."""
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    config = {"poll_interval": "1h", "registries": [{"host": reg}],
              "api_token_env": "API_TOKEN", **settings}
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    try:
        health(url, process)
        app = tmp_path / "probe"
        app.mkdir()
        (app / "Dockerfile").write_text(probe_dockerfile(
            f"{reg}/base:1", f"{url}/healthz", f"http://{reg}/v2/"))
        code, out, err = await cli("build", "--no-push", str(app), url=url)
        assert code == 0, out + err
        return [line.split()[0] for line in out.splitlines()
                if line.startswith(("REACHED ", "UNREACHABLE "))]
    finally:
        stop(process)


@pytest.mark.parametrize("network", [None, "none", stack.BUILD_NETWORK])
async def test_builds_cannot_reach_the_daemon_or_the_registry_on_loopback(
        tmp_path, registry, base_images, docker_host, network):
    """The default, and the other networks a build may be given, run its RUN steps (the probe
    answers) without the host's loopback."""
    settings = {"build_network": network} if network else {}
    said = await build_probe(tmp_path, registry, base_images, docker_host, **settings)
    assert said == ["UNREACHABLE", "UNREACHABLE"]


async def test_build_network_host_is_what_reaches_them(tmp_path, registry, base_images,
                                                       docker_host):
    """The probe above is sharp: on the host's network the same build reaches both."""
    said = await build_probe(tmp_path, registry, base_images, docker_host, build_network="host")
    assert said == ["REACHED", "REACHED"]


# ---------------------------------------------------------------- registry bodies (item 4)

ENDLESS_INDEX = textwrap.dedent("""
    import asyncio
    from aiohttp import web
    from basewatch.errors import RegistryError
    from basewatch.oci.reference import ImageReference
    from basewatch.oci.registry import OCI_INDEX, RegistryClient

    sent = 0

    async def endless(request):
        global sent
        response = web.StreamResponse(headers={{"Content-Type": OCI_INDEX,
                                               "Docker-Content-Digest": "sha256:" + "a" * 64}})
        await response.prepare(request)
        chunk = b'{{"manifests": [' + b" " * (1 << 20)
        try:
            while sent < (2 << 30):  # 2 GiB: far past the child's address-space limit
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    async def main():
        app = web.Application()
        app.router.add_route("{method}", "/v2/{{tail:.*}}", endless)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with RegistryClient(attempts=1) as client:
            try:
                await client.get_manifest(ImageReference.parse(f"127.0.0.1:{{port}}/big:1"))
            except RegistryError as error:
                print("ERROR", error)
        print("SENT", sent)
        await runner.cleanup()

    asyncio.run(main())
""")


def test_an_endless_manifest_index_is_refused_at_the_limit(bounded):
    result = bounded(ENDLESS_INDEX.format(method="GET"), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ERROR ") and "larger than 4 MiB" in lines[0], result.stdout
    assert int(lines[1].split()[1]) < 64 << 20  # the client stopped reading, not the server


# ---------------------------------------------------------------- context redirects (item 3)

class Redirector(LoopbackServer):
    """Serves a context tarball at /ctx.tar.gz; /go/PATH redirects to `target` + PATH, and
    git's first request to /moved.git/... is redirected likewise. Counts what it served."""

    def __init__(self, files: dict[str, str]):
        super().__init__()
        self.body = tarball(files)
        self.target = ""
        self.served: list[str] = []

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ctx.tar.gz", self._tarball)
        app.router.add_get("/go/{path:.*}", self._redirect)
        app.router.add_get("/moved.git/{path:.*}", self._redirect_git)
        return app

    async def _tarball(self, request: web.Request) -> web.Response:
        self.served.append(f"{request.host}{request.path}")
        return web.Response(body=self.body)

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(self.target + request.match_info["path"])

    async def _redirect_git(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"{self.target}app.git/{request.match_info['path']}"
                                       f"?{request.query_string}")


@pytest.fixture
async def context_daemon(tmp_path, registry, base_images, docker_host):
    """A daemon whose API may name contexts on 127.0.0.1 only."""
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    config = {"poll_interval": "1h", "registries": [{"host": reg}], "api_token_env": "API_TOKEN",
              "allowed_context_hosts": ["127.0.0.1"]}
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    health(url, process)
    yield url, reg
    stop(process)


async def test_a_tarball_redirect_to_an_unlisted_host_is_not_followed(context_daemon):
    url, reg = context_daemon
    async with Redirector({"Dockerfile": f"FROM {reg}/base:1\n"}) as server:
        server.target = f"http://localhost:{server.port}/"  # the same server, by another name
        start = f"http://127.0.0.1:{server.port}/go/ctx.tar.gz"
        code, out, err = await cli("build", "--no-push", start, url=url)
        assert code != 0
        assert f"may not download {start}: localhost is not in the daemon's " \
               "allowed_context_hosts (127.0.0.1)" in out + err, out + err
        assert server.served == []
        # A redirect to a listed host is followed.
        server.target = f"http://127.0.0.1:{server.port}/"
        code, out, err = await cli("build", "--no-push", start, url=url)
        assert code == 0, out + err
        assert server.served == [f"127.0.0.1:{server.port}/ctx.tar.gz"]


async def test_a_git_redirect_is_not_followed(context_daemon, tmp_path):
    url, reg = context_daemon
    work, served = tmp_path / "work", tmp_path / "served"
    work.mkdir()
    (work / "Dockerfile").write_text(f"FROM {reg}/base:1\n")
    for args in (("init", "-q", "-b", "main"), ("add", "."),
                 ("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "1")):
        subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "app.git")],
                   check=True)
    async with GitHttpServer(served) as git_server, Redirector({}) as server:
        server.target = f"http://localhost:{git_server.port}/"
        moved = f"http://127.0.0.1:{server.port}/moved.git#main"
        code, out, err = await cli("task", "create", "moved", "--context", moved,
                                   "-t", f"{reg}/moved:1", url=url)
        assert code != 0 and "git could not fetch" in err, out + err
        assert git_server.requests == [], "git followed the redirect"
        # The repository itself, named directly, is fetched: the test's git server works.
        direct = f"http://127.0.0.1:{git_server.port}/app.git#main"
        code, out, err = await cli("task", "create", "direct", "--context", direct,
                                   "-t", f"{reg}/direct:1", url=url)
        assert code == 0, out + err


async def test_a_name_that_resolves_to_loopback_passes_only_if_listed(tmp_path):
    """No allowed_context_hosts: any public host, but `localhost` is loopback."""
    async with Redirector({"Dockerfile": "FROM scratch\n"}) as server:
        with pytest.raises(ContextError, match="localhost resolves to .*, a loopback address"):
            await fetch_tarball_context(f"http://localhost:{server.port}/ctx.tar.gz",
                                        tmp_path / "a", 1 << 20,
                                        hosts=HostPolicy.for_contexts(None))
        with pytest.raises(ContextError, match="127.0.0.1 is a loopback address"):
            await fetch_tarball_context(f"http://127.0.0.1:{server.port}/ctx.tar.gz",
                                        tmp_path / "b", 1 << 20,
                                        hosts=HostPolicy.for_contexts(None))
        with pytest.raises(ContextError, match="git may not fetch .*localhost resolves to"):
            await fetch_git_context(parse_context(f"http://localhost:{server.port}/app.git"),
                                    tmp_path / "c", hosts=HostPolicy.for_contexts(None))
        assert server.served == []
        await fetch_tarball_context(f"http://localhost:{server.port}/ctx.tar.gz", tmp_path / "d",
                                    1 << 20, hosts=HostPolicy.for_contexts(["localhost"]))
        assert (tmp_path / "d" / "Dockerfile").is_file()


# ---------------------------------------------------------------- registries and realms (item 3)

class CountingRegistry(LoopbackServer):
    """A registry stand-in on `host` that asks for a token from `realm`; records each request."""

    def __init__(self, host: str, realm: str):
        super().__init__()
        self.host, self.realm = host, realm
        self.requests: list[str] = []

    async def start(self):
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        return web.Response(status=401, headers={
            "WWW-Authenticate": f'Bearer realm="{self.realm}",service="x"'})


async def test_a_dockerfile_from_an_unlisted_loopback_registry_is_refused(context_daemon):
    """`FROM 127.0.0.4:PORT/x` made the daemon ask that registry, then the realm it named on
    127.0.0.1 (here: the daemon's own API). Now neither is contacted and the task is refused."""
    url, reg = context_daemon
    async with CountingRegistry("127.0.0.4", f"{url}/api/tasks") as unlisted:
        hostile = f"127.0.0.4:{unlisted.port}"
        async with Redirector({"Dockerfile": f"FROM {hostile}/x:1\n"}) as server:
            context = f"http://127.0.0.1:{server.port}/ctx.tar.gz"
            code, out, err = await cli("task", "create", "probe", "--context", context,
                                       "-t", f"{reg}/probe:1", url=url)
            assert code != 0, out + err
            assert (f"basewatch: error: {hostile}/x:1: registry {hostile} at http://{hostile} "
                    "may not be contacted: 127.0.0.4 is a loopback address, which the daemon "
                    "contacts only for hosts listed in its registries; list the registry "
                    f"{hostile} under registries in the config to allow it") in err, err
            # A quick build is refused before the engine would pull from it.
            code, out, err = await cli("build", "--no-push", context, url=url)
            assert code != 0 and "127.0.0.4 is a loopback address" in out + err, out + err
    assert unlisted.requests == []
    code, out, _ = await cli("task", "list", url=url)
    assert "probe" not in out


async def test_a_build_may_not_push_to_an_unlisted_loopback_registry(context_daemon, tmp_path):
    """The engine would push wherever a tag says: to a service on the host's loopback too."""
    url, reg = context_daemon
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text(f"FROM {reg}/base:1\n")
    async with CountingRegistry("127.0.0.5", "http://127.0.0.5/token") as unlisted:
        target = f"127.0.0.5:{unlisted.port}/loot:1"
        code, out, err = await cli("build", "-t", target, str(app), url=url)
        assert code != 0, out + err
        assert f"{target}: registry 127.0.0.5:{unlisted.port} at http://127.0.0.5:" \
               f"{unlisted.port} may not be contacted: 127.0.0.5 is a loopback address" \
               in out + err, out + err
    assert unlisted.requests == []
