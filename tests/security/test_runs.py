"""The run lifecycle under hostile input and a hostile host (issue 8): no run stays Running, a
full disk shows in /healthz, uploads live exactly as long as a run needs them, and manual runs
are bounded."""
from __future__ import annotations

import shutil
from collections import namedtuple

import aiohttp

from tests.support.inprocess_daemon import running_daemon
from tests.support.waiting import wait_for

Usage = namedtuple("Usage", "total used free")


async def test_a_full_disk_makes_healthz_say_so(tmp_path, monkeypatch):
    async with running_daemon(tmp_path, monkeypatch) as daemon:
        async with aiohttp.ClientSession() as session:
            async def report() -> dict:
                async with session.get(f"{daemon.url}/healthz") as response:
                    return await response.json()

            assert (await report())["status"] == "degraded"  # no engine here
            monkeypatch.setattr(shutil, "disk_usage",
                                lambda path: Usage(10 * 2 ** 30, 10 * 2 ** 30, 3 * 2 ** 20))

            async def disk_reported():
                found = await report()
                return found if found.get("disk", "ok") != "ok" else None

            found = await wait_for(disk_reported, 15, "/healthz to report the full disk")
        assert found["status"] == "degraded"
        assert found["disk"].startswith("the disk of state_dir is (nearly) full: 3 MiB free")
        assert str(tmp_path) not in found["disk"]
