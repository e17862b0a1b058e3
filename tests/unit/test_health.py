"""/healthz: the host probe (the engine and the state disk, checked once per period) and the
report."""
from __future__ import annotations

import asyncio

from basewatch.errors import BasewatchError
from basewatch.health import HostProbe, HostState, disk_problem, health_report
from basewatch.models import WatchedDigest


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


def test_a_failing_reference_makes_the_report_degraded():
    watched = [WatchedDigest("reg/a:1", "linux/amd64", "sha256:1"),
               WatchedDigest("reg/b:1", "linux/amd64", None, last_error="401")]
    report = health_report(HostState(None, None), watched, 2, {"ca2", "ca1"})
    assert report == {"status": "degraded", "engine": "ok", "disk": "ok", "watched": 2,
                      "failing_references": ["reg/b:1"], "failing_remotes": {},
                      "failing_webhooks": {}, "unregistered_tasks": {}, "queued": 2,
                      "running": ["ca1", "ca2"]}
    assert health_report(HostState(None, None), watched[:1], 0, ())["status"] == "ok"
    assert health_report(HostState("down", None), [], 0, ())["engine"] == "down"


def test_a_failing_git_remote_makes_the_report_degraded():
    failing = {"https://git.example/app.git": "cannot list the branches of "
               "https://git.example/app.git: the repository was not found"}
    report = health_report(HostState(None, None), [], 0, (), failing)
    assert report["status"] == "degraded" and report["failing_remotes"] == failing
    assert health_report(HostState(None, None), [], 0, (), {})["status"] == "ok"


def test_a_config_task_that_could_not_be_registered_makes_the_report_degraded():
    unregistered = {"app": "the context folder /srv/app does not exist (or is not a folder)"}
    report = health_report(HostState(None, None), [], 0, (), unregistered_tasks=unregistered)
    assert report["status"] == "degraded" and report["unregistered_tasks"] == unregistered


async def test_healthz_answers_503_while_the_database_refuses():
    from aiohttp.test_utils import TestClient, TestServer

    from basewatch.errors import StoreBusyError
    from basewatch.http.app import create_app
    from basewatch.metrics import Metrics

    async def refused():
        raise StoreBusyError("connection refused")

    async def nothing(*args):
        return {}

    async with TestClient(TestServer(create_app(refused, object(), "token", Metrics(),
                                                nothing))) as client:
        response = await client.get("/healthz")
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert await response.json() == {"status": "unavailable",
                                         "database": "connection refused"}
