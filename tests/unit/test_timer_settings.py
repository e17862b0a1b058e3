"""Timers in a task's settings: validated at the edge (five-field cron, names unique and valid),
mapped into the domain's Task, written back by task_fields, and kept by the task store."""
from __future__ import annotations

import json

import pytest

from basewatch.config import MAX_TIMERS_PER_TASK, TaskSettings, load_config, task_fields
from basewatch.cron import EXPECTED_FORM
from basewatch.store.tasks import task_from_json, task_json
from basewatch.tasks import Task, Timer
from tests.unit.test_config import REPO, problem, task, write


def test_the_example_config_shows_a_timer():
    [hello] = load_config(REPO / "config" / "basewatch.example.yml").tasks
    assert hello.to_task().timers == (Timer("nightly", "0 2 * * *", True),)


def test_timers_map_into_the_task_and_back(tmp_path):
    path = write(tmp_path, {"tasks": [task(timers=[
        {"name": "nightly", "schedule": "0 2 * * *"},
        {"name": "sundays", "schedule": "  30 9   * * 0 ", "enabled": False}])]})
    [settings] = load_config(path).tasks
    domain = settings.to_task()
    # Written as given, spaces normalised; enabled by default.
    assert domain.timers == (Timer("nightly", "0 2 * * *", True),
                             Timer("sundays", "30 9 * * 0", False))
    assert TaskSettings.model_validate(task_fields(domain)).to_task() == domain


def test_a_task_has_no_timers_by_default(tmp_path):
    [settings] = load_config(write(tmp_path, {"tasks": [task()]})).tasks
    assert settings.to_task().timers == ()


@pytest.mark.parametrize("schedule, says", [
    ("0 0 2 * * *", "has 6 fields"),       # a seconds field, as Quartz and APScheduler write
    ("0 2 * *", "has 4 fields"),
    ("@daily", "has 1 field"),
    ("61 * * * *", "is not valid"),
    ("0 2 * * 8", "is not valid"),
])
def test_a_schedule_that_is_not_five_field_cron_is_refused_with_the_expected_form(
        tmp_path, schedule, says):
    path = write(tmp_path, {"tasks": [task(timers=[{"name": "t", "schedule": schedule}])]})
    line = problem(path)
    assert line.startswith(f"{path}: tasks[0].timers[0].schedule: schedule {schedule!r} {says}")
    assert line.endswith(f"expected {EXPECTED_FORM}")


def test_a_schedule_naming_no_real_date_is_refused(tmp_path):
    path = write(tmp_path, {"tasks": [task(timers=[{"name": "t", "schedule": "0 0 30 2 *"}])]})
    assert problem(path) == (f"{path}: tasks[0].timers[0].schedule: schedule '0 0 30 2 *' "
                             "names no date that exists, so it would never fire")


def test_timer_names_are_unique_within_a_task_and_valid(tmp_path):
    twice = write(tmp_path, {"tasks": [task(timers=[{"name": "t", "schedule": "* * * * *"},
                                                    {"name": "t", "schedule": "0 * * * *"}])]})
    assert problem(twice) == (f"{twice}: tasks[0].timers: the timer name 't' is given twice: "
                              "each timer of a task needs its own name")
    bad = write(tmp_path, {"tasks": [task(timers=[{"name": "a b", "schedule": "* * * * *"}])]},
                "bad.yml")
    assert problem(bad).startswith(f"{bad}: tasks[0].timers[0].name: 'a b' is not a timer name")
    unknown = write(tmp_path, {"tasks": [task(timers=[{"name": "t", "schedule": "* * * * *",
                                                       "timezone": "CET"}])]}, "unknown.yml")
    assert problem(unknown) == f"{unknown}: tasks[0].timers[0].timezone: unknown key"


def test_the_task_store_keeps_timers_and_reads_older_rows_without_them():
    timed = Task(name="app", context="/srv/app", images=["reg:5000/app:1"],
                 timers=(Timer("nightly", "0 2 * * *"), Timer("off", "* * * * 0", False)))
    assert task_from_json(task_json(timed)) == timed
    older = json.loads(task_json(timed))
    del older["timers"]
    assert task_from_json(json.dumps(older)).timers == ()


def test_a_stored_timer_with_a_schedule_refused_today_is_refused():
    row = json.loads(task_json(Task(name="app", context="/srv/app", images=["r/app:1"])))
    row["timers"] = [{"name": "t", "schedule": "0 0 2 * * *"}]
    with pytest.raises(Exception, match="has 6 fields"):
        task_from_json(json.dumps(row))



def test_a_task_takes_at_most_a_hundred_timers(tmp_path):
    many = [{"name": f"t{n}", "schedule": "0 2 * * *"} for n in range(MAX_TIMERS_PER_TASK + 1)]
    path = write(tmp_path, {"tasks": [task(timers=many)]})
    assert problem(path) == (f"{path}: tasks[0].timers: List should have at most "
                             f"{MAX_TIMERS_PER_TASK} items after validation, not "
                             f"{MAX_TIMERS_PER_TASK + 1}")
