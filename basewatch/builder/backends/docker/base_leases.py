"""The engine keeps one local image per base name, whatever the platform: a run for linux/arm64
pulling `base:1` would swap the image under a linux/amd64 build of the same base. A lease lets
any number of runs of one platform share a base name, and makes other platforms wait."""
from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager
from typing import AsyncIterator, Iterable


class _Lease:
    def __init__(self) -> None:
        self.platform: str | None = None
        self.holders = 0
        self.changed = asyncio.Condition()


class BaseLeases:
    def __init__(self) -> None:
        self._leases: dict[str, _Lease] = {}

    @asynccontextmanager
    async def hold(self, names: Iterable[str], platform: str) -> AsyncIterator[None]:
        """Hold every base name for `platform` (taken in sorted order, so two runs never wait
        on each other crosswise)."""
        async with AsyncExitStack() as stack:
            for name in sorted(set(names)):
                await stack.enter_async_context(self._hold_one(name, platform))
            yield

    @asynccontextmanager
    async def _hold_one(self, name: str, platform: str) -> AsyncIterator[None]:
        lease = self._leases.setdefault(name, _Lease())
        async with lease.changed:
            await lease.changed.wait_for(lambda: lease.platform in (None, platform))
            lease.platform = platform
            lease.holders += 1
        try:
            yield
        finally:
            async with lease.changed:
                lease.holders -= 1
                if lease.holders == 0:
                    # Kept in the map (one per base name): a fresh lease made while others
                    # wait on this one would let two platforms in at once.
                    lease.platform = None
                    lease.changed.notify_all()
