"""Run plans on a real database: a Dockerfile task is one build step per platform and its
pushes (one index per tag for several platforms), its tags and build args rendered with the run's
variables, each platform on the bases its Dockerfile names for it."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from basewatch.builder.contexts.checkout import Checkouts
from basewatch.builder.planner import RunPlanner
from basewatch.builder.quick_runs import QuickBuildSpec, QuickRuns
from basewatch.config import TaskSettings
from basewatch.tasks import Task
from basewatch.errors import BasewatchError
from basewatch.models import BaseChange, RunRequest, RunType, SourceCommit, Trigger
from basewatch.run_plan import BuildStep, IndexStep, PushStep
from basewatch.templating import render
from basewatch.watcher.registration import TaskRegistrar
from tests.support.fake_registry import SeenDigests
from tests.support.stores import open_store

MOMENT = datetime(2026, 5, 3, 4, 33, 42, tzinfo=timezone.utc)


class Log:
    def __init__(self):
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def write(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture
async def store(tmp_path):
    store = await open_store(tmp_path / "state" / "basewatch.db")
    yield store
    await store.close()


def planner(store, tmp_path, **kwargs) -> RunPlanner:
    return RunPlanner(store, Checkouts(tmp_path / "state" / "contexts", 10_000_000),
                      QuickRuns(tmp_path / "state" / "contexts"), "reg.example:5000",
                      clock=lambda: MOMENT, **kwargs)


async def registered(store, tmp_path, dockerfile="FROM reg.example:5000/base:1\n",
                     **settings) -> Task:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "Dockerfile").write_text(dockerfile)
    task = TaskSettings(**{"name": "app", "context": str(folder),
                           "image": ["{{.Run.Registry}}/app:{{.Run.ID}}", "$Registry/app:$Date"],
                           **settings}).to_task()
    await TaskRegistrar(store, SeenDigests(), "reg.example:5000").register(task, "config")
    return task


async def run_of(store, task: str, platform: str, **kwargs):
    return await store.runs.create(RunRequest(task, Trigger.IMAGE_UPDATE, RunType.AUTO_BUILD,
                                              platform, "base moved", **kwargs))


async def plan_of(plans: RunPlanner, run):
    task = await plans.task_of(run)
    async with plans.plan(run, task, Log()) as plan:
        return plan, plan.context.is_dir()


async def test_one_platform_is_a_build_and_a_push_per_tag_rendered_for_the_run(store,
                                                                               tmp_path):
    await registered(store, tmp_path, build_args={"VERSION": "{{.Values.version}}-$ID"})
    run = await run_of(store, "app", "linux/amd64", values={"version": "2"})
    plan, had_context = await plan_of(planner(store, tmp_path), run)
    tags = [f"reg.example:5000/app:{run.id}", "reg.example:5000/app:20260503-043342z"]
    assert had_context and plan.context == tmp_path / "app"
    assert (plan.run_id, plan.task, plan.images, plan.platforms) == (
        run.id, "app", tags, ["linux/amd64"])
    assert plan.steps == [
        BuildStep("linux/amd64", tags, ["reg.example:5000/base:1"], "Dockerfile",
                  {"VERSION": f"2-{run.id}"}, None),
        PushStep(tags[0]), PushStep(tags[1])]


async def test_a_task_that_does_not_push_is_a_build_alone(store, tmp_path):
    await registered(store, tmp_path, "FROM reg.example:5000/base:1 AS final\n", push=False,
                     target="final")
    run = await run_of(store, "app", "linux/amd64")
    plan, _ = await plan_of(planner(store, tmp_path), run)
    assert [type(s) for s in plan.steps] == [BuildStep]
    assert plan.steps[0].target == "final"


async def test_several_platforms_push_each_under_a_tag_of_its_own_then_one_index_per_tag(
        store, tmp_path):
    await registered(store, tmp_path, platform=["linux/amd64", "linux/arm/v7"])
    run = await run_of(store, "app", "linux/amd64,linux/arm/v7")
    plan, _ = await plan_of(planner(store, tmp_path), run)
    tag, dated = f"reg.example:5000/app:{run.id}", "reg.example:5000/app:20260503-043342z"
    amd, arm = f"{tag}-linux-amd64", f"{tag}-linux-arm-v7"
    base = ["reg.example:5000/base:1"]
    # One image per platform in each repository the tags name: the first tag's.
    assert plan.steps == [
        BuildStep("linux/amd64", [amd], base), PushStep(amd, "linux/amd64"),
        BuildStep("linux/arm/v7", [arm], base), PushStep(arm, "linux/arm/v7"),
        IndexStep(tag, [("linux/amd64", amd), ("linux/arm/v7", arm)]),
        IndexStep(dated, [("linux/amd64", amd), ("linux/arm/v7", arm)])]
    assert plan.platforms == ["linux/amd64", "linux/arm/v7"]


async def test_each_platform_of_a_quick_build_is_built_on_the_bases_its_dockerfile_names(
        store, tmp_path):
    folder = tmp_path / "state" / "contexts" / "upload-1"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM reg.example:5000/base-${TARGETARCH}:1 AS build\n"
                                       "FROM reg.example:5000/runtime:1\n"
                                       "COPY --from=build /x /x\n")
    spec = QuickBuildSpec(context_path=str(folder), image=["reg.example:5000/q:{{.Run.ID}}"])
    run = await store.runs.create(RunRequest("", Trigger.MANUAL, RunType.QUICK_BUILD,
                                             "linux/amd64,linux/arm64", "quick build",
                                             spec=spec.model_dump_json()))
    plan, _ = await plan_of(planner(store, tmp_path), run)
    builds = [s for s in plan.steps if isinstance(s, BuildStep)]
    assert [(s.platform, s.bases) for s in builds] == [
        ("linux/amd64", ["reg.example:5000/runtime:1", "reg.example:5000/base-amd64:1"]),
        ("linux/arm64", ["reg.example:5000/runtime:1", "reg.example:5000/base-arm64:1"])]
    assert plan.task == "quick-build"


async def test_a_registered_local_task_is_built_on_its_recorded_bases(store, tmp_path):
    task = await registered(store, tmp_path)
    # Changed on disk since registration: the recorded edges still answer (the registration
    # follows a local folder, not a run).
    (tmp_path / "app" / "Dockerfile").write_text("FROM reg.example:5000/other:1\n")
    changed = []

    async def on_context_changed(task, context):
        changed.append(task.name)

    run = await run_of(store, "app", "linux/amd64")
    plan, _ = await plan_of(planner(store, tmp_path, on_context_changed=on_context_changed),
                            run)
    assert plan.steps[0].bases == ["reg.example:5000/base:1"]
    assert changed == [] and task.local_context


async def test_a_run_of_a_task_that_is_gone_cannot_be_planned(store, tmp_path):
    run = await run_of(store, "gone", "linux/amd64")
    with pytest.raises(BasewatchError, match="task gone no longer exists"):
        await planner(store, tmp_path).task_of(run)


async def test_a_dockerfile_missing_from_the_context_cannot_be_planned(store, tmp_path):
    await registered(store, tmp_path)
    (tmp_path / "app" / "Dockerfile").unlink()
    run = await run_of(store, "app", "linux/amd64")
    with pytest.raises(BasewatchError):
        await plan_of(planner(store, tmp_path), run)


async def test_a_base_image_run_builds_on_the_digest_that_fired_it(store, tmp_path):
    await registered(store, tmp_path)
    base, fired = "reg.example:5000/base:1", "sha256:" + "f" * 64
    await store.runs.record_change_and_queue(base, "linux/amd64", fired, None, [])
    run = await run_of(store, "app", "linux/amd64",
                       base_change=BaseChange(base, "linux/amd64", fired))
    plans, log = planner(store, tmp_path), Log()
    async with plans.plan(run, await plans.task_of(run), log) as plan:
        assert plan.steps[0].pinned == {base: fired}
    assert any("the digest that triggered this run" in line for line in log.lines)


async def test_a_base_that_moved_again_is_built_on_the_newest_digest_and_says_so(store,
                                                                               tmp_path):
    await registered(store, tmp_path)
    base, fired, newer = "reg.example:5000/base:1", "sha256:" + "f" * 64, "sha256:" + "e" * 64
    await store.runs.record_change_and_queue(base, "linux/amd64", newer, None, [])
    run = await run_of(store, "app", "linux/amd64",
                       base_change=BaseChange(base, "linux/amd64", fired))
    plans, log = planner(store, tmp_path), Log()
    async with plans.plan(run, await plans.task_of(run), log) as plan:
        assert plan.steps[0].pinned == {base: newer}
    assert any(f"moved again since this run was queued, from {fired} to {newer}" in line
               for line in log.lines)


async def test_a_manual_run_pins_nothing(store, tmp_path):
    await registered(store, tmp_path)
    run = await store.runs.create(RunRequest("app", Trigger.MANUAL, RunType.AUTO_BUILD,
                                             "linux/amd64", "manual run"))
    plan, _ = await plan_of(planner(store, tmp_path), run)
    assert plan.steps[0].pinned == {}


async def test_a_commit_run_has_its_commit_and_branch_in_its_variables(store, tmp_path):
    plans = planner(store, tmp_path)
    sha = "c" * 40
    run = await store.runs.create(RunRequest(
        "app", Trigger.PULL_REQUEST, RunType.AUTO_BUILD, "linux/amd64", "",
        source_commit=SourceCommit(sha, "feature", 2, "main", "refs/pull/2/head")))
    variables = plans.variables(run, revision=sha)
    assert render("app:{{.Run.Commit}}-$Branch", variables) == f"app:{sha}-feature"


async def test_another_run_of_a_git_context_has_the_commit_it_checked_out(store, tmp_path):
    plans = planner(store, tmp_path)
    run = await run_of(store, "app", "linux/amd64")
    task = Task(name="app", context="https://git.example/app.git#release:web", images=[])
    assert render("$Commit $Branch", plans.variables(run, task, "d" * 40)) == \
        f"{'d' * 40} release"
    pinned = Task(name="app", context=f"https://git.example/app.git#{'d' * 40}", images=[])
    assert render("[$Branch]", plans.variables(run, pinned, "d" * 40)) == "[]"
