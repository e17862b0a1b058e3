"""Issue 8, items 2, 3 and 4 (registry bodies): what the daemon reaches on behalf of what a user
wrote. Builds do not share the daemon's network; context fetches and registry requests stay on
the hosts the config allows, on every hop; registry bodies are read up to a limit."""
from __future__ import annotations

import textwrap

import pytest

import stack  # scripts/, put on sys.path by tests/conftest.py
from tests.e2e.test_daemon import health, start_daemon, stop
from tests.e2e.test_graph import TOKEN
from tests.e2e.test_quick_build import cli

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
    from basewatch.watcher.reference import ImageReference
    from basewatch.watcher.registry import OCI_INDEX, RegistryClient

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
