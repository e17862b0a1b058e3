"""Base leases: one platform at a time per base name, any number of runs of that platform."""
from __future__ import annotations

import asyncio

from basewatch.builder.backends.docker.base_leases import BaseLeases


async def test_same_platform_shares_other_platform_waits():
    leases, events = BaseLeases(), []

    async def run(name: str, platform: str, hold: float) -> None:
        async with leases.hold(["base:1"], platform):
            events.append(f"start {name}")
            await asyncio.sleep(hold)
            events.append(f"end {name}")

    await asyncio.gather(run("amd-1", "linux/amd64", 0.2), run("amd-2", "linux/amd64", 0.1),
                         run("arm", "linux/arm64", 0.05))
    # Both amd64 runs overlap; the arm64 run starts only after both ended.
    assert events[:2] == ["start amd-1", "start amd-2"]
    assert events.index("start arm") > events.index("end amd-1")


async def test_several_names_are_taken_in_order_without_deadlock():
    leases = BaseLeases()

    async def run(names: list[str], platform: str) -> str:
        async with leases.hold(names, platform):
            await asyncio.sleep(0.05)
        return platform

    done = await asyncio.wait_for(asyncio.gather(
        run(["a", "b"], "linux/amd64"), run(["b", "a"], "linux/arm64"),
        run(["a"], "linux/arm/v7")), timeout=5)
    assert sorted(done) == ["linux/amd64", "linux/arm/v7", "linux/arm64"]
