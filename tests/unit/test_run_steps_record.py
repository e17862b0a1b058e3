"""A task file's steps kept with its run: each outcome recorded as it ends (so a run still
going, or cut short, shows the steps done), in the file's order, one line each with no secret in
it; shown by GET /api/runs/{id} and `task show-run`; deleted with the run; and a file of more
steps than the cap refused."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from basewatch.builder.executor import RunExecutor
from basewatch.builder.step_summary import MAX_RECORD_CHARS, step_record
from basewatch.cli import main
from basewatch.client import DaemonClient
from basewatch.errors import TaskFileError
from basewatch.http.openapi import openapi_document
from basewatch.models import RunRequest, RunStatus, RunType, StepRecord, Trigger
from basewatch.run_plan import (
    BuildStep,
    CmdStep,
    Container,
    PushStep,
    StepControl,
    TaskStep,
    TaskStepOutcome,
)
from basewatch.services import Services
from basewatch.taskfile import load_task_file
from basewatch.taskfile.loader import MAX_STEPS
from basewatch.templating import RunVariables
from tests.support.fake_engine import FakeContainers
from tests.support.waiting import wait_for
from tests.unit.backends.docker.test_task_steps import StubPlanner, backend_on, cmd
from tests.support.stores import open_store

REGISTRY = "reg.example:5000"
VARIABLES = RunVariables("ca1", datetime(2026, 12, 1, tzinfo=timezone.utc), REGISTRY)


@pytest.fixture
async def store(tmp_path):
    store = await open_store(tmp_path / "state" / "basewatch.db")
    yield store
    await store.close()


async def queued(store):
    return await store.runs.create(RunRequest("app", Trigger.MANUAL, RunType.AUTO_RUN,
                                              "linux/amd64"))


async def test_each_step_is_recorded_with_its_outcome_in_the_file_s_order(store, tmp_path):
    steps = [
        TaskStep(StepControl("build", when=("-",)),
                 BuildStep("linux/amd64", [f"{REGISTRY}/app:1"], [f"{REGISTRY}/base:1"])),
        cmd("server", "sleep", "30", when=("-",), container={"detach": True}),
        cmd("flaky", "flaky", "1", when=("build",), retries=1, retry_delay=0.0),
        TaskStep(StepControl("push"), (PushStep(f"{REGISTRY}/app:1"),)),
        cmd("test", "exit", "4"),
        cmd("deploy", "true")]
    backend = backend_on(FakeContainers())
    executor = RunExecutor(store, StubPlanner(tmp_path, steps), backend,
                           tmp_path / "state" / "logs")
    run = await queued(store)
    try:
        await executor.execute(run.id)
    finally:
        backend.close()
    assert (await store.runs.get(run.id)).status is RunStatus.FAILED
    recorded = await store.runs.steps(run.id)
    assert [(s.id, s.kind, s.status) for s in recorded] == [
        ("build", "build", "Succeeded"), ("server", "cmd", "Detached"),
        ("flaky", "cmd", "Succeeded"), ("push", "push", "Succeeded"),
        ("test", "cmd", "Failed"), ("deploy", "cmd", "Skipped")]
    by_id = {s.id: s for s in recorded}
    assert by_id["build"].action == f"build -t {REGISTRY}/app:1"
    assert by_id["push"].action == f"push {REGISTRY}/app:1"
    assert by_id["server"].action == "cmd busybox (detached)"
    assert by_id["flaky"].attempts == 2 and by_id["flaky"].exit_code == 0
    assert by_id["test"].exit_code == 4
    assert by_id["test"].error == "the container exited with code 4"
    assert by_id["deploy"].started_after is None and by_id["deploy"].attempts == 0
    assert by_id["deploy"].error.startswith("skipped: test")
    # Offsets from the run's start: a step that waits for another starts after it has ended.
    assert by_id["build"].started_after >= 0
    assert by_id["push"].started_after >= by_id["flaky"].started_after + by_id["flaky"].seconds \
        - 0.01


async def test_steps_done_are_recorded_while_the_run_is_still_going(store, tmp_path):
    steps = [cmd("first", "true"), cmd("long", "sleep", "30")]
    backend = backend_on(FakeContainers())
    executor = RunExecutor(store, StubPlanner(tmp_path, steps), backend,
                           tmp_path / "state" / "logs")
    run = await queued(store)
    going = asyncio.create_task(executor.execute(run.id))
    try:
        recorded = await wait_for(lambda: store.runs.steps(run.id), 10, "the first step")
        assert [(s.id, s.status) for s in recorded] == [("first", "Succeeded")]
        assert (await store.runs.get(run.id)).status is RunStatus.RUNNING
        assert await executor.cancel(run.id)
        await asyncio.wait_for(going, 10)
    finally:
        backend.close()
    # Cut short: the step done stays, the one killed is Failed (or never reported).
    ended = await store.runs.get(run.id)
    assert ended.status is RunStatus.CANCELED
    assert (await store.runs.steps(run.id))[0].id == "first"


def test_a_recorded_step_is_one_line_with_no_secret_in_it():
    step = TaskStep(StepControl("deploy"), CmdStep(Container("tool:hunter2")))
    outcome = TaskStepOutcome(step, "Failed", 1.23456, 3, 1,
                              "hunter2 was refused\n" + "x" * 2000)
    record = step_record(outcome, 0.5, ("hunter2",))
    assert record.action == "cmd tool:*****"
    assert "hunter2" not in record.error and "\n" not in record.error
    assert len(record.error) == MAX_RECORD_CHARS and record.error.endswith("…")
    assert (record.seconds, record.attempts, record.exit_code, record.started_after) == \
        (1.235, 3, 1, 0.5)


async def test_a_step_reported_again_replaces_its_record_and_goes_with_its_run(store):
    run = await queued(store)
    await store.runs.record_step(run.id, 1, StepRecord("b", "cmd", "cmd x", "Failed", 0.2, 1.0,
                                                       1, 1, "boom"))
    await store.runs.record_step(run.id, 0, StepRecord("a", "cmd", "cmd x", "Succeeded", 0.0,
                                                       0.1, 1, 0))
    await store.runs.record_step(run.id, 1, StepRecord("b", "cmd", "cmd x", "Succeeded", 0.2,
                                                       2.0, 2, 0))
    assert [(s.id, s.status, s.attempts) for s in await store.runs.steps(run.id)] == [
        ("a", "Succeeded", 1), ("b", "Succeeded", 2)]
    await store.runs.finish(run.id, RunStatus.SUCCEEDED)
    deleted, _ = await store.runs.purge_finished(datetime.now(timezone.utc)
                                                 + timedelta(days=1), [])
    assert deleted == {run.id}
    assert await store.runs.steps(run.id) == []


async def test_the_api_s_run_view_lists_the_steps(store):
    run = await queued(store)
    await store.runs.record_step(run.id, 0, StepRecord("a", "cmd", "cmd busybox", "Failed",
                                                       0.25, 1.5, 2, 3, "exited with code 3"))
    services = Services(store, None, type("E", (), {"log_updates": None, "logs_dir": None})(), None)
    view = await services.get_run(run.id)
    assert view["steps"] == [{
        "id": "a", "kind": "cmd", "action": "cmd busybox", "status": "Failed",
        "started_after_seconds": 0.25, "duration_seconds": 1.5, "attempts": 2,
        "exit_code": 3, "error": "exited with code 3"}]
    schema = openapi_document()["components"]["schemas"]
    assert schema["Run"]["properties"]["steps"]["items"] == {
        "$ref": "#/components/schemas/RunStep"}
    assert set(schema["RunStep"]["properties"]) == set(view["steps"][0])


SHOWN = {
    "id": "ca7", "task": "app", "type": "AutoRun", "trigger": "Manual", "status": "Failed",
    "platform": "linux/amd64", "started_at": "2026-12-01T04:00:00+00:00",
    "duration_seconds": 9.0, "outputs": [{"image": "reg/app:1", "digest": "sha256:ab"}],
    "source_commit": None, "error": "step test failed: the container exited with code 4",
    "steps": [
        {"id": "build", "kind": "build", "action": "build -t reg/app:1", "status": "Succeeded",
         "started_after_seconds": 0.1, "duration_seconds": 3.25, "attempts": 1,
         "exit_code": None, "error": None},
        {"id": "test", "kind": "cmd", "action": "cmd tests", "status": "Failed",
         "started_after_seconds": 3.5, "duration_seconds": 1.0, "attempts": 2,
         "exit_code": 4, "error": "the container exited with code 4"},
        {"id": "deploy", "kind": "cmd", "action": "cmd helm", "status": "Skipped",
         "started_after_seconds": None, "duration_seconds": 0.0, "attempts": 0,
         "exit_code": None, "error": "skipped: test did not succeed"}]}


def test_show_run_prints_the_steps_as_a_table(monkeypatch, capsys):
    monkeypatch.setattr(DaemonClient, "get_json", lambda self, path: SHOWN)
    assert main(["task", "show-run", "--run-id", "ca7", "-o", "table",
                 "--url", "http://127.0.0.1:9"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("STEP"))
    assert header.split() == ["STEP", "ACTION", "STATUS", "STARTED", "DURATION", "ATTEMPTS",
                              "EXIT", "ERROR"]
    test = next(line for line in lines if line.startswith("test "))
    assert test.split()[:7] == ["test", "cmd", "tests", "Failed", "+3.5s", "1.0s", "2"]
    assert "the container exited with code 4" in test
    deploy = next(line for line in lines if line.startswith("deploy "))
    assert "Skipped" in deploy and "skipped: test did not succeed" in deploy
    assert "Error: step test failed" in out and "reg/app:1  sha256:ab" in out


def test_show_run_prints_json_by_default(monkeypatch, capsys):
    import json
    monkeypatch.setattr(DaemonClient, "get_json", lambda self, path: SHOWN)
    assert main(["task", "show-run", "--run-id", "ca7", "--url", "http://127.0.0.1:9"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"][1]["exit_code"] == 4


def test_a_file_of_more_steps_than_the_cap_is_refused():
    text = "version: v1.1.0\nsteps:\n" + "  - cmd: bash\n" * (MAX_STEPS + 1)
    with pytest.raises(TaskFileError, match=f"line 2: the file has {MAX_STEPS + 1} steps: "
                                            f"at most {MAX_STEPS}"):
        load_task_file(text, variables=VARIABLES, image_aliases={"bash": "busybox"})
    assert len(load_task_file("steps:\n" + "  - cmd: bash\n" * MAX_STEPS, variables=VARIABLES,
               image_aliases={"bash": "busybox"})[0]) == MAX_STEPS
