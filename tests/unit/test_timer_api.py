"""Timers through the API and the CLI, on a daemon in this process: add, update, remove, list,
each error a clear message (unknown task or timer, a duplicate name, an invalid cron with the
expected form), and a config task's timers left to the config file."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pytest

from basewatch.cli import main
from basewatch.config import TimerSettings
from basewatch.cron import EXPECTED_FORM
from tests.support.inprocess_daemon import TOKEN, running_daemon
from tests.support.waiting import wait_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def app_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "contexts" / name
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM scratch\n")
    return folder


@pytest.fixture
async def daemon(tmp_path, monkeypatch):
    config_task = {"name": "configured", "context": str(app_folder(tmp_path, "configured")),
                   "image": "127.0.0.1:9/configured:1",
                   "timers": [{"name": "nightly", "schedule": "0 2 * * *"}]}
    async with running_daemon(tmp_path, monkeypatch, tasks=[config_task],
                              local_contexts_root=tmp_path / "contexts") as daemon:
        async with aiohttp.ClientSession(daemon.url, headers=AUTH) as http:
            async with http.post("/api/tasks", json={
                    "name": "app", "context": str(app_folder(tmp_path, "app")),
                    "image": "127.0.0.1:9/app:1"}) as answer:
                assert answer.status == 201, await answer.text()
        yield daemon


async def call(daemon, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    async with aiohttp.ClientSession(daemon.url, headers=AUTH) as http:
        async with http.request(method, path, json=body) as answer:
            return answer.status, (await answer.json() if answer.status != 204 else None)


async def test_add_list_update_and_remove_a_timer(daemon):
    status, timer = await call(daemon, "POST", "/api/tasks/app/timers",
                               {"name": "nightly", "schedule": "0 2 * * *"})
    assert status == 201, timer
    upcoming = datetime.fromisoformat(timer["next_fire"])
    assert (upcoming.tzinfo, upcoming.hour, upcoming.minute) == (timezone.utc, 2, 0)
    assert (timer["name"], timer["schedule"], timer["enabled"]) == ("nightly", "0 2 * * *", True)
    # The scheduler is told at once, and counts the new timer from now.
    await wait_for(daemon.store.timers.marks, 5, "the new timer to be counted")
    status, _ = await call(daemon, "POST", "/api/tasks/app/timers",
                           {"name": "sundays", "schedule": "30 9 * * 0", "enabled": False})
    assert status == 201
    status, listed = await call(daemon, "GET", "/api/tasks/app/timers")
    assert [(t["name"], t["next_fire"] is None) for t in listed] == [("nightly", False),
                                                                    ("sundays", True)]
    status, shown = await call(daemon, "GET", "/api/tasks/app")
    assert [t["name"] for t in shown["timers"]] == ["nightly", "sundays"]
    assert shown["timers"][0]["next_fire"] == timer["next_fire"]

    status, updated = await call(daemon, "PATCH", "/api/tasks/app/timers/sundays",
                                 {"enabled": True})
    assert (status, updated["schedule"], updated["enabled"]) == (200, "30 9 * * 0", True)
    assert datetime.fromisoformat(updated["next_fire"]).strftime("%A %H:%M") == "Sunday 09:30"
    status, updated = await call(daemon, "PATCH", "/api/tasks/app/timers/nightly",
                                 {"schedule": "15 3 * * *"})
    assert (status, updated["schedule"], updated["enabled"]) == (200, "15 3 * * *", True)

    assert (await call(daemon, "DELETE", "/api/tasks/app/timers/nightly"))[0] == 204
    status, listed = await call(daemon, "GET", "/api/tasks/app/timers")
    assert [t["name"] for t in listed] == ["sundays"]
    assert [t.timers for t in await daemon.store.tasks.all(source="api")][0][0].name == "sundays"


@pytest.mark.parametrize("method, path, body, status, error", [
    ("POST", "/api/tasks/nope/timers", {"name": "t", "schedule": "* * * * *"}, 404,
     "no task named nope: `basewatch task list` shows them"),
    ("GET", "/api/tasks/nope/timers", None, 404,
     "no task named nope: `basewatch task list` shows them"),
    ("PATCH", "/api/tasks/app/timers/nope", {"enabled": False}, 404,
     "task app has no timer named nope (its timers: nightly)"),
    ("DELETE", "/api/tasks/app/timers/nope", None, 404,
     "task app has no timer named nope (its timers: nightly)"),
    ("POST", "/api/tasks/app/timers", {"name": "nightly", "schedule": "0 3 * * *"}, 409,
     "task app has a timer named nightly already: update it, or give the new one another name"),
    ("POST", "/api/tasks/app/timers", {"name": "t", "schedule": "0 0 2 * * *"}, 400,
     f"timer: schedule: schedule '0 0 2 * * *' has 6 fields: expected {EXPECTED_FORM}"),
    ("POST", "/api/tasks/app/timers", {"name": "t", "schedule": "0 25 * * *"}, 400,
     f"timer: schedule: schedule '0 25 * * *' is not valid: expected {EXPECTED_FORM}"),
    ("PATCH", "/api/tasks/app/timers/nightly", {"schedule": "@daily"}, 400,
     f"timer: schedule: schedule '@daily' has 1 field: expected {EXPECTED_FORM}"),
    ("PATCH", "/api/tasks/app", {"timers": [{"name": "t", "schedule": "1 2 3 4 5 6"}]}, 400,
     f"task: timers[0].schedule: schedule '1 2 3 4 5 6' has 6 fields: expected {EXPECTED_FORM}"),
    ("PATCH", "/api/tasks/app/timers/nightly", {"name": "other"}, 400,
     "a timer cannot be renamed: add one by the new name and remove this one"),
    ("POST", "/api/tasks/app/timers", {"name": "t"}, 400, "timer: schedule: Field required"),
    ("POST", "/api/tasks/app/timers", {"name": "t", "schedule": "* * * * *", "tz": "CET"}, 400,
     "timer: tz: unknown key"),
])
async def test_errors_are_one_clear_line_and_change_nothing(daemon, method, path, body, status,
                                                            error):
    await call(daemon, "POST", "/api/tasks/app/timers", {"name": "nightly", "schedule": "0 2 * * *"})
    before = await daemon.store.tasks.get("app")
    answer = await call(daemon, method, path, body)
    assert answer == (status, {"error": error})
    assert await daemon.store.tasks.get("app") == before


async def test_a_config_tasks_timers_belong_to_the_config_file(daemon):
    owned = ("task configured comes from the config file, which owns its timers: change them "
             "there and send the daemon SIGHUP")
    for method, path, body in (
            ("POST", "/api/tasks/configured/timers", {"name": "t", "schedule": "* * * * *"}),
            ("PATCH", "/api/tasks/configured/timers/nightly", {"enabled": False}),
            ("DELETE", "/api/tasks/configured/timers/nightly", None)):
        assert await call(daemon, method, path, body) == (409, {"error": owned})
    status, listed = await call(daemon, "GET", "/api/tasks/configured/timers")
    assert (status, [(t["name"], t["schedule"], t["enabled"]) for t in listed]) == (
        200, [("nightly", "0 2 * * *", True)])


async def test_the_cli_manages_timers_in_acrs_argument_names(daemon, capsys):
    async def cli(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, ["task", "timer", *argv, "--url", daemon.url,
                                              "--token", TOKEN])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = await cli("add", "app", "--timer-name", "nightly", "--schedule", "0 2 * * *")
    assert code == 0 and '"name": "nightly"' in out
    code, out, _ = await cli("add", "app", "--timer-name", "weekly", "--schedule", "0 12 * * 0",
                             "--enabled", "false")
    assert code == 0 and '"enabled": false' in out
    code, out, _ = await cli("update", "app", "--timer-name", "weekly", "--enabled", "true")
    assert code == 0 and '"enabled": true' in out
    code, out, _ = await cli("list", "app")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SCHEDULE", "ENABLED", "NEXT", "FIRE"]
    assert lines[2].startswith("nightly  0 2 * * *   true     ") and lines[2].endswith(
        "02:00:00 UTC")
    assert lines[3].startswith("weekly   0 12 * * 0  true     ")
    code, out, _ = await cli("remove", "app", "--timer-name", "weekly")
    assert (code, out) == (0, "Removed timer weekly from task app\n")
    code, _, err = await cli("add", "app", "--timer-name", "nightly", "--schedule", "0 3 * * *")
    assert (code, err) == (2, "basewatch: error: task app has a timer named nightly already: "
                              "update it, or give the new one another name (HTTP 409)\n")
    code, _, err = await cli("update", "app", "--timer-name", "nope", "--enabled", "false")
    assert code == 2 and "task app has no timer named nope" in err


def test_the_cli_refuses_a_six_field_schedule_showing_the_expected_form(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["task", "timer", "add", "app", "--timer-name", "t", "--schedule", "0 0 2 * * *"])
    assert exited.value.code == 2
    assert (f"argument --schedule: schedule '0 0 2 * * *' has 6 fields: expected "
            f"{EXPECTED_FORM}") in capsys.readouterr().err


async def test_task_create_takes_a_schedule_as_acr_does(daemon, tmp_path, capsys):
    folder = app_folder(tmp_path, "scheduled")
    code = await asyncio.to_thread(main, [
        "task", "create", "scheduled", "--context", str(folder), "-t", "127.0.0.1:9/s:1",
        "--schedule", "0 21 * * *", "--url", daemon.url, "--token", TOKEN])
    assert code == 0, capsys.readouterr()
    status, listed = await call(daemon, "GET", "/api/tasks/scheduled/timers")
    assert [(t["name"], t["schedule"], t["enabled"]) for t in listed] == [
        ("t1", "0 21 * * *", True)]


async def test_a_config_reload_reaches_the_scheduler_at_once(daemon, tmp_path):
    async def marks():
        return {(m.task, m.timer): m.schedule for m in await daemon.store.timers.marks()}

    await wait_for(lambda: _equal(marks(), {("configured", "nightly"): "0 2 * * *"}), 5,
                   "the config task's timer to be counted")
    [settings] = daemon.config.tasks
    retimed = settings.model_copy(update={"timers": [
        TimerSettings(name="nightly", schedule="0 4 * * *"),
        TimerSettings(name="hourly", schedule="0 * * * *")]})
    await daemon.config_sync.sync([retimed])  # what SIGHUP does with the file's tasks
    await wait_for(lambda: _equal(marks(), {("configured", "nightly"): "0 4 * * *",
                                            ("configured", "hourly"): "0 * * * *"}), 5,
                   "the new timers to be counted")
    await daemon.config_sync.sync([])  # the task left the file: its timers with it
    await wait_for(lambda: _equal(marks(), {}), 5, "the timers to be forgotten")


async def _equal(awaitable, expected) -> bool:
    return await awaitable == expected
