"""An aiohttp application served on a free loopback port, in the test's own event loop."""
from __future__ import annotations

from aiohttp import web


class LoopbackServer:
    """Subclasses build the application; this starts, stops and names it."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self):
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.close()
