"""Issue 8, items 2, 3 and 4 (registry bodies): what the daemon reaches on behalf of what a user
wrote. Builds do not share the daemon's network; context fetches and registry requests stay on
the hosts the config allows, on every hop; registry bodies are read up to a limit."""
from __future__ import annotations

import textwrap

import pytest

pytestmark = pytest.mark.e2e


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
