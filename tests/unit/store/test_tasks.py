"""The task store keeps the domain's Task, and still reads the rows older versions wrote."""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from basewatch.oci.platforms import Platform
from basewatch.store import Store
from basewatch.store import tasks as task_rows
from basewatch.store.tasks import task_from_json, task_json
from basewatch.tasks import BaseImageTrigger, CommitTrigger, PullRequestTrigger, Task
from tests.support.stores import open_store

AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64")
# What versions before the domain Task stored: config.TaskSettings' JSON.
OLDER_ROW = {"name": "app", "context": "/srv/app", "file": "docker/Dockerfile",
             "image": ["reg:5000/app:{{.Run.ID}}", "reg:5000/app:latest"],
             "build_args": {"VERSION": "1"}, "target": "final", "platform": "linux/arm64",
             "base_image_trigger": {"enabled": False, "type": "all"}, "push": False,
             "timeout": 600.0}


@pytest.fixture
async def store(tmp_path: Path):
    store = await open_store(tmp_path / "basewatch.db")
    yield store
    await store.close()


async def insert_row(store: Store, name: str, definition: str) -> None:
    async with store.database.transaction() as db:
        await db.execute(text("INSERT INTO tasks (name, source, definition, created_at,"
                              " updated_at) VALUES (:name, 'api', :definition, '', '')"),
                         {"name": name, "definition": definition})


def test_a_task_round_trips_with_every_field():
    task = Task(name="app", context="https://git.example/app.git#main:web", file="web/Dockerfile",
                images=["reg:5000/app:1"], build_args={"A": "b"}, target="final",
                platforms=[AMD64, ARM64], base_image_trigger=BaseImageTrigger(False, "all"),
                push=False, timeout=90.0)
    assert task_from_json(task_json(task)) == task


async def test_a_row_an_older_version_wrote_reads_as_a_task(store):
    await insert_row(store, "app", json.dumps(OLDER_ROW))
    assert await store.tasks.get("app") == Task(
        name="app", context="/srv/app", file="docker/Dockerfile",
        images=["reg:5000/app:{{.Run.ID}}", "reg:5000/app:latest"], build_args={"VERSION": "1"},
        target="final", platforms=[ARM64], base_image_trigger=BaseImageTrigger(False, "all"),
        push=False, timeout=600.0)


async def test_an_older_row_is_written_back_in_todays_form(store):
    await insert_row(store, "app", json.dumps(OLDER_ROW))
    await store.tasks.upsert(await store.tasks.get("app"), "api")
    row = await store.database.fetchone(
        text("SELECT definition FROM tasks WHERE name = 'app'"))
    stored = json.loads(row["definition"])
    assert (stored["images"], stored["platforms"]) == (OLDER_ROW["image"], ["linux/arm64"])
    assert "image" not in stored and "platform" not in stored


async def test_an_older_row_with_defaults_left_out_takes_the_defaults(store):
    await insert_row(store, "app", json.dumps({"name": "app", "context": "/srv/app",
                                                "image": ["reg:5000/app:1"]}))
    task = await store.tasks.get("app")
    assert (task.file, task.platforms, task.push, task.timeout) == (
        "Dockerfile", [Platform("linux", "amd64")], True, 3600.0)


@pytest.mark.parametrize("change, reason", [
    ({"file": "/etc/passwd"}, "must be a relative path inside the build context"),
    ({"file": "../x"}, "may not contain '..'"),
    ({"platform": "windows/amd64"}, "cannot be built"),
    ({"platform": "linux"}, "is not of the form os/arch[/variant]"),
    ({"image": "reg:5000/app:1"}, "image: 'reg:5000/app:1' is not what a task holds there"),
    ({"push": "yes"}, "push"),
    ({"timeout": -1}, "timeout"),
    ({"base_image_trigger": {"type": "sometimes"}}, "base_image_trigger.type"),
    ({"context": ""}, "the build context is empty"),
])
async def test_a_row_refused_today_is_ignored_and_said_once(store, caplog, change, reason):
    await insert_row(store, "bad", json.dumps({**OLDER_ROW, "name": "bad", **change}))
    await store.tasks.upsert(Task(name="good", context="/srv/good", images=["r:5000/g:1"]), "api")
    with caplog.at_level(logging.WARNING, logger="basewatch.store.tasks"):
        assert [t.name for t in await store.tasks.all()] == ["good"]
        assert await store.tasks.get("bad") is None
    [first, _] = [r.getMessage() for r in caplog.records]
    assert first.startswith("task bad is ignored: its stored definition is refused (")
    assert reason in first
    assert await store.tasks.delete("bad")


async def test_a_row_missing_a_required_key_is_ignored(store, caplog):
    await insert_row(store, "bad", json.dumps({"name": "bad", "image": ["r:5000/b:1"]}))
    assert await store.tasks.all() == []
    assert "context is missing" in caplog.text


async def test_credentials_in_a_context_url_are_not_stored(store):
    await store.tasks.upsert(Task(name="app", context="https://u:p@git.example/app.git",
                                  images=["r:5000/a:1"]), "api")
    row = await store.database.fetchone(text("SELECT definition FROM tasks"))
    assert "u:p" not in row["definition"]


def test_the_source_trigger_settings_round_trip():
    task = Task(name="app", context="https://git.example/app.git#main", images=["r:5000/a:1"],
                commit_trigger=CommitTrigger(False, ("main", "release/1.x")),
                pull_request_trigger=PullRequestTrigger(True, True),
                webhook_secret_env="HOOK_SECRET", git_access_token_env="GIT_TOKEN",
                report_status=True)
    assert task_from_json(task_json(task)) == task


async def test_a_row_from_before_the_source_triggers_reads_as_their_defaults(store):
    await insert_row(store, "app", json.dumps(OLDER_ROW))
    task = await store.tasks.get("app")
    assert task.commit_trigger == CommitTrigger(True, ())
    assert task.pull_request_trigger == PullRequestTrigger(False, False)
    assert (task.webhook_secret_env, task.git_access_token_env, task.report_status) == \
        (None, None, False)


@pytest.mark.parametrize("change, reason", [
    ({"commit_trigger": {"branches": "main"}}, "commit_trigger.branches"),
    ({"commit_trigger": {"branches": ["-x"]}}, "not a valid git branch name"),
    ({"pull_request_trigger": {"enabled": 1}}, "pull_request_trigger.enabled"),
    ({"webhook_secret_env": 5}, "webhook_secret_env"),
    ({"report_status": "yes"}, "report_status"),
])
async def test_malformed_source_trigger_settings_in_a_row_are_refused(store, caplog, change,
                                                                      reason):
    await insert_row(store, "bad", json.dumps({**OLDER_ROW, "name": "bad", **change}))
    with caplog.at_level(logging.WARNING, logger="basewatch.store.tasks"):
        assert await store.tasks.get("bad") is None
    assert reason in caplog.text


async def test_thousands_of_tasks_are_stored_at_once_and_read_back_in_order(store):
    # Above ROWS_READ_ON_THE_LOOP rows the definitions are read in a thread: same answer.
    tasks = [Task(name=f"app-{n:04d}", context="/srv/app", images=[f"reg/app-{n}"])
             for n in reversed(range(1200))]
    await store.tasks.upsert_many([(task, "config" if n % 2 else "api")
                                   for n, task in enumerate(tasks)])
    assert [t.name for t in await store.tasks.all()] == sorted(t.name for t in tasks)
    assert len(await store.tasks.all(source="config")) == 600
    assert len(await store.tasks.names(source="api")) == 600
    listed = await store.tasks.with_sources()
    assert len(listed) == 1200 and listed[0][0].name == "app-0000"


async def test_named_reads_only_the_tasks_asked_for(store, monkeypatch):
    monkeypatch.setattr(task_rows, "NAMES_PER_QUERY", 2)  # several queries: same answer
    await store.tasks.upsert_many([(Task(name=f"app-{n}", context="/srv/app",
                                         images=[f"reg/app-{n}"]), "config") for n in range(6)])
    await insert_row(store, "refused", json.dumps({"name": "refused", "context": "/srv/app",
                                                    "image": ["reg/x"], "file": "/etc/passwd"}))
    named = await store.tasks.named(iter(["app-4", "app-1", "gone", "app-4", "refused", "app-0"]))
    assert [task.name for task in named] == ["app-0", "app-1", "app-4"]
    assert named[0] == await store.tasks.get("app-0")
    assert await store.tasks.named([]) == []


def count_parses(monkeypatch) -> list[str]:
    """The names of the definitions the task store parses from now on, in order."""
    parsed, parse = [], task_rows.task_from_json

    def counted(text: str) -> Task:
        parsed.append(json.loads(text)["name"])
        return parse(text)

    monkeypatch.setattr(task_rows, "task_from_json", counted)
    return parsed


async def test_a_definition_read_again_unchanged_is_not_parsed_again(store, monkeypatch):
    parsed = count_parses(monkeypatch)
    tasks = [Task(name=name, context="/srv/app", images=[f"reg/{name}"]) for name in "abc"]
    await store.tasks.upsert_many([(task, "config") for task in tasks])
    assert await store.tasks.all() == tasks and sorted(parsed) == ["a", "b", "c"]
    assert await store.tasks.all() == tasks
    assert await store.tasks.named(["a", "c"]) == [tasks[0], tasks[2]]
    assert await store.tasks.get("b") == tasks[1]
    assert sorted(parsed) == ["a", "b", "c"]  # each parsed once
    changed = replace(tasks[0], images=["reg/a:2"])
    await store.tasks.upsert(changed, "api")
    assert await store.tasks.get_with_source("a") == (changed, "api")
    assert await store.tasks.all() == [changed, *tasks[1:]]
    assert sorted(parsed) == ["a", "a", "b", "c"]  # the changed one only
    await store.tasks.delete("b")
    assert await store.tasks.all() == [changed, tasks[2]]


async def test_a_refused_definition_is_said_at_every_read(store, caplog):
    await insert_row(store, "bad", json.dumps({"name": "bad", "context": "/srv/app",
                                               "image": ["reg/x"], "file": "/etc/passwd"}))
    for _ in range(2):
        caplog.clear()
        assert await store.tasks.all() == [] and await store.tasks.get("bad") is None
        assert caplog.text.count("task bad is ignored") == 2


async def test_readers_at_once_parse_each_definition_once(store, monkeypatch):
    parsed = count_parses(monkeypatch)
    monkeypatch.setattr(task_rows, "ROWS_READ_ON_THE_LOOP", 1)  # parsed in a thread
    tasks = [Task(name=f"app-{n}", context="/srv/app", images=[f"reg/app-{n}"])
             for n in range(5)]
    await store.tasks.upsert_many([(task, "config") for task in tasks])
    first, second, named = await asyncio.gather(
        store.tasks.all(), store.tasks.all(), store.tasks.named(["app-1", "app-3"]))
    assert first == second == tasks and named == [tasks[1], tasks[3]]
    assert sorted(parsed) == [task.name for task in tasks]
