"""Timers on the real engine and registry: a real every-minute timer builds and pushes within
75 s of the daemon starting, and a daemon stopped across many scheduled fires catches up with
exactly one run when it starts again."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from basewatch.config import load_config
from basewatch.daemon import Daemon
from basewatch.models import RunStatus, Trigger
from tests.support import stores
from tests.e2e.test_daemon import health, start_daemon, stop, write_app
from tests.support.waiting import wait_for, wait_until

pytestmark = pytest.mark.e2e


async def test_an_every_minute_timer_builds_and_pushes_within_75_seconds(
        tmp_path, registry, base_images, docker_host):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    context = tmp_path / "apps" / "timed"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {reg}/base:1\nRUN date -u > /built-at\n")
    path = tmp_path / "basewatch.yml"
    path.write_text(yaml.safe_dump({
        "state_dir": "state", "listen": "127.0.0.1:0", "registries": [{"host": reg}],
        "tasks": [{"name": "timed", "context": "apps/timed",
                   "image": [f"{reg}/apps/timed:{{{{.Run.ID}}}}"],
                   "timers": [{"name": "minutely", "schedule": "* * * * *"}]}]}))
    daemon = Daemon(load_config(path), docker_host)
    started = datetime.now(timezone.utc)
    await daemon.start()
    try:
        async def timer_run():
            runs = await daemon.store.runs.list(task="timed")
            return runs[-1] if runs and runs[-1].started_at is not None else None

        run = await wait_for(timer_run, 80, "the timer's first run to start")
        assert run.trigger is Trigger.TIMER
        assert (run.started_at - started).total_seconds() < 75
        assert run.reason.startswith("timer minutely (* * * * *) for ")
        scheduled = datetime.strptime(run.reason.split(" for ")[1], "%Y-%m-%d %H:%M UTC")
        assert scheduled.replace(tzinfo=timezone.utc) > started  # not a fire from the past

        async def finished():
            current = await daemon.store.runs.get(run.id)
            return current if current.status.finished else None

        done = await wait_for(finished, 90, "the timer's run to finish")
        log_text = (tmp_path / "state" / "logs" / f"{run.id}.log").read_text()
        assert done.status is RunStatus.SUCCEEDED, (done.error, log_text)
        assert [o.image for o in done.outputs] == [f"{reg}/apps/timed:{run.id}"]
        built_at = await asyncio.to_thread(base_images.read_file, f"{reg}/apps/timed:{run.id}",
                                           "/built-at")
        assert built_at and "UTC" in built_at
    finally:
        await daemon.stop()


def timer_marks(tmp_path: Path) -> list[tuple]:
    return stores.query(tmp_path / "state",
                        "SELECT task, timer, schedule, last_scheduled FROM timer_marks")


def runs(tmp_path: Path) -> list[tuple]:
    return stores.query(tmp_path / "state", "SELECT id, task, trigger, status, reason, outputs"
                                            " FROM runs ORDER BY seq")


def test_a_daemon_stopped_across_many_fires_catches_up_with_one_run(
        tmp_path, registry, base_images, docker_host):
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    config = {
        "registries": [{"host": reg}],
        "tasks": [{"name": "yearly", "image": f"{reg}/yearly:latest",
                   "context": write_app(tmp_path, "yearly", f"FROM {reg}/base:1\n"),
                   "timers": [{"name": "newyear", "schedule": "0 0 1 1 *"}]}],
    }
    process, url = start_daemon(config, tmp_path, docker_host)
    health(url, process)
    # The new timer is counted from now: its last fire (this 1 January) is not made up for.
    year = datetime.now(timezone.utc).year
    [mark] = wait_until(lambda: timer_marks(tmp_path), 30, "the timer to be counted")
    assert mark == ("yearly", "newyear", "0 0 1 1 *", f"{year}-01-01T00:00:00+00:00")
    stop(process)
    assert runs(tmp_path) == []

    # As if the daemon had been down since before 1 January 2020: the fires of 2021 to this
    # year were all missed while it was stopped.
    stores.execute(tmp_path / "state",
                   "UPDATE timer_marks SET last_scheduled = '2020-01-01T00:00:00+00:00'")
    process, url = start_daemon(config, tmp_path, docker_host)
    health(url, process)
    wait_until(lambda: runs(tmp_path) and runs(tmp_path)[-1][3] == "Succeeded", 90,
               "the catch-up run to succeed")
    output = stop(process)
    [(run_id, task, trigger, status, reason, outputs)] = runs(tmp_path)
    assert (task, trigger, status) == ("yearly", "Timer", "Succeeded"), output
    assert reason == (f"timer newyear (0 0 1 1 *) for {year}-01-01 00:00 UTC, catching up on "
                      f"{year - 2020} missed fires")
    assert f'"image": "{reg}/yearly:latest"' in outputs
    assert timer_marks(tmp_path) == [("yearly", "newyear", "0 0 1 1 *",
                                      f"{year}-01-01T00:00:00+00:00")]
    assert f"timer newyear fired for {year}-01-01T00:00:00+00:00 ({year - 2020} missed fires, " \
           f"one run): run {run_id} queued" in output

    # Started once more: that catch-up counted, nothing else is owed.
    process, url = start_daemon(config, tmp_path, docker_host)
    health(url, process)
    time.sleep(1)
    stop(process)
    assert len(runs(tmp_path)) == 1
