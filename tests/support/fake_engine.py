"""A container engine and a registry client that build and hold nothing: the Docker backend's
steps, and every way they end, without an engine."""
from __future__ import annotations

import asyncio

from basewatch.builder.backends.docker.engine import BuildResult

DIGEST = "sha256:" + "a" * 64


class FakeEngine:
    """Builds nothing; `build` waits for `release` when one is given, then fails with `fail`."""

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail
        self.building = asyncio.Event()
        self.release: asyncio.Event | None = None
        self.loop = asyncio.get_running_loop()

    def ping(self) -> None:
        pass

    def pull(self, source, name, platform, auth, log, current=None) -> str:
        log(f"pulled {source}\n")
        return DIGEST

    def build(self, request, log) -> BuildResult:
        log("Step 1/1 : FROM ...\n")
        self.loop.call_soon_threadsafe(self.building.set)
        if self.release is not None:
            asyncio.run_coroutine_threadsafe(self.release.wait(), self.loop).result(timeout=60)
        if self.fail is not None:
            raise self.fail
        return BuildResult("image")

    def push(self, tag, auth, log) -> str:
        return DIGEST

    def cancel(self) -> None:
        pass


class FakeDigests:
    """A registry client that answers with `fail` raised, as a hostile registry makes it."""

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail

    async def platform_digest(self, ref, platform):
        if self.fail is not None:
            raise self.fail
        return None

    async def check_registry(self, ref) -> None:
        pass
