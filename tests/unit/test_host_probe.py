"""The host probe: the engine's reachability and the state disk, checked once per period."""
from __future__ import annotations

import asyncio

from basewatch.errors import BasewatchError
from basewatch.host_probe import HostProbe, disk_problem


def test_enough_free_space_is_no_problem(tmp_path):
    assert disk_problem(tmp_path) is None


def test_a_missing_state_dir_is_reported(tmp_path):
    assert "cannot tell the free space" in disk_problem(tmp_path / "missing")


async def test_one_ping_answers_callers_at_once_and_its_error_is_reported(tmp_path):
    pings = []

    def ping() -> None:
        pings.append(1)
        raise BasewatchError("cannot reach the Docker Engine")

    probe = HostProbe(ping, tmp_path, ttl=60.0)
    try:
        states = await asyncio.gather(*(probe.state() for _ in range(5)))
        assert {state.engine_error for state in states} == {"cannot reach the Docker Engine"}
        await probe.state()
        assert pings == [1]
    finally:
        probe.close()
