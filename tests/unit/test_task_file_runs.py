"""Task files everywhere a task can be, on a real database and the fake backend: a task file
task's plan (its steps, its workspace, each build on the bases its Dockerfile names), the run's
values (a values file's, --set's over them) and secrets (in memory only, never in the store),
registration tracking the bases of every build step's Dockerfile, run types as ACR names them,
and a file with an error failing its run, with the line, before anything runs."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from basewatch.builder.contexts.checkout import Checkouts
from basewatch.builder.executor import RunExecutor
from basewatch.builder.planner import RunPlanner
from basewatch.builder.quick_runs import QuickRuns
from basewatch.builder.run_secrets import RunSecrets, SecretsLost
from basewatch.config import TaskSettings
from basewatch.errors import InvalidRequestError
from basewatch.models import BaseChange, DependencyKind, RunRequest, RunStatus, RunType, Trigger
from basewatch.run_plan import BuildStep, CmdStep, TaskStep, Workspace
from basewatch.services import Services, run_values
from basewatch.triggers import Triggers
from basewatch.triggers.base_image import FanOut
from basewatch.models import DigestChange
from basewatch.watcher.registration import TaskRegistrar
from tests.support.fake_backend import FakeBackend
from tests.support.fake_registry import SeenDigests
from tests.support.stores import open_store

MOMENT = datetime(2026, 5, 3, 4, 33, 42, tzinfo=timezone.utc)
REGISTRY = "reg.example:5000"
BASE = f"{REGISTRY}/base:1"
TOOLS = "docker.io/library/golang:1.22"

TASK_FILE = """\
version: v1.1.0
steps:
  - id: build-web
    build: -t $Registry/web:$ID -f web/Dockerfile web
    when: ["-"]
  - id: build-tests
    build: -t tests:{{.Run.ID}} --build-arg TOOLS={{.Values.tools}} tests
    when: ["-"]
  - id: web
    cmd: $Registry/web:$ID
    detach: true
    when: [build-web]
  - id: check
    cmd: tests:{{.Run.ID}} http://web/ {{.Values.greeting}}
    env: ["TOKEN={{.Secrets.token}}"]
    when: [web, build-tests]
  - push: ["$Registry/web:$ID"]
"""


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


def app_folder(tmp_path: Path, task_file: str = TASK_FILE) -> Path:
    folder = tmp_path / "app"
    (folder / "web").mkdir(parents=True)
    (folder / "tests").mkdir()
    (folder / "acr-task.yaml").write_text(task_file)
    (folder / "web" / "Dockerfile").write_text(f"FROM {BASE}\nCOPY . /srv\n")
    # The tests' image is built on a tool image given as a build arg, and on the web image
    # an earlier step built: that one is neither pulled nor watched.
    (folder / "tests" / "Dockerfile").write_text(
        "ARG TOOLS=golang:1.21\nFROM $TOOLS AS tools\n"
        f"FROM {REGISTRY}/web:latest\nCOPY --from=tools /bin /tools\n")
    return folder


def task_settings(folder: Path, **settings) -> TaskSettings:
    return TaskSettings(**{"name": "app", "context": str(folder), "file": "acr-task.yaml",
                           **settings})


def planner(store, tmp_path, secrets: RunSecrets | None = None) -> RunPlanner:
    return RunPlanner(store, Checkouts(tmp_path / "state" / "contexts", 10_000_000),
                      QuickRuns(tmp_path / "state" / "contexts"), REGISTRY,
                      clock=lambda: MOMENT, secrets=secrets,
                      image_aliases={"bash": "docker.io/library/busybox:1.36"})


def registrar(store) -> TaskRegistrar:
    return TaskRegistrar(store, SeenDigests(), REGISTRY)


class Submitted(list):
    def __call__(self, run_id: str, delay: float) -> None:
        self.append(run_id)


class NoExecutor:
    log_updates = None
    logs_dir = None  # no run here reads a log


def services(store, registrar, secrets: RunSecrets) -> Services:
    return Services(store, registrar, NoExecutor(), Triggers(store.runs, Submitted()),
                    secrets=secrets)


async def plan_of(plans: RunPlanner, run):
    task = await plans.task_of(run)
    async with plans.plan(run, task, Log()) as plan:
        return plan


async def test_a_task_file_task_is_planned_as_its_steps_on_a_workspace(store, tmp_path):
    folder = app_folder(tmp_path)
    await registrar(store).register(task_settings(folder).to_task(), "config")
    secrets = RunSecrets()
    view = await services(store, registrar(store), secrets).run_task(
        "app", {"tools": "golang:1.22", "greeting": "hi"}, secrets={"token": "t0ken-value"})
    run = await store.runs.get(view["id"])
    assert run.run_type is RunType.AUTO_RUN

    plan = await plan_of(planner(store, tmp_path, secrets), run)

    assert isinstance(plan.workspace, Workspace) and plan.context == folder
    assert all(isinstance(step, TaskStep) for step in plan.steps)
    assert [step.control.id for step in plan.steps] == [
        "build-web", "build-tests", "web", "check", "acb_step_4"]
    web, tests = plan.steps[0].action, plan.steps[1].action
    assert isinstance(web, BuildStep) and isinstance(tests, BuildStep)
    assert web.tags == [f"{REGISTRY}/web:{run.id}"] and tests.tags == [f"tests:{run.id}"]
    assert (web.context, web.dockerfile, web.platform) == ("web", "Dockerfile", "linux/amd64")
    # Each build on what its own Dockerfile names, with its build args.
    assert web.bases == [BASE]
    assert tests.bases == [f"{REGISTRY}/web:latest", TOOLS]
    check = plan.steps[3].action
    assert isinstance(check, CmdStep)
    assert check.container.args == ("http://web/", "hi")
    assert "TOKEN=t0ken-value" in check.container.env
    assert "t0ken-value" in plan.workspace.secrets  # masked in the log by the backend
    assert plan.images == [f"{REGISTRY}/web:{run.id}", f"tests:{run.id}"]


async def test_an_image_built_by_an_earlier_step_is_not_a_base(store, tmp_path):
    folder = app_folder(tmp_path, TASK_FILE.replace("-t $Registry/web:$ID",
                                                    "-t $Registry/web:latest"))
    task = task_settings(folder).to_task()
    await registrar(store).register(task, "config")
    run = await store.runs.create(RunRequest("app", Trigger.MANUAL, RunType.AUTO_RUN,
                                             "linux/amd64", values={"tools": "golang:1.22",
                                                                    "greeting": "hi"}))
    secrets = RunSecrets()
    secrets.hold(run.id, {"token": "x"})
    plan = await plan_of(planner(store, tmp_path, secrets), run)
    assert plan.steps[1].action.bases == [TOOLS]


async def test_values_file_values_give_way_to_set(store, tmp_path):
    values = run_values({"greeting": "from-set"},
                        "greeting: from the file\ntools: golang:1.22\nnested: {a: 1}\n")
    assert values == {"greeting": "from-set", "tools": "golang:1.22", "nested": {"a": 1}}
    folder = app_folder(tmp_path)
    await registrar(store).register(task_settings(folder).to_task(), "config")
    secrets = RunSecrets()
    view = await services(store, registrar(store), secrets).run_task(
        "app", {"greeting": "from-set"},
        "greeting: from the file\ntools: golang:1.22\n", {"token": "x"})
    run = await store.runs.get(view["id"])
    plan = await plan_of(planner(store, tmp_path, secrets), run)
    assert plan.steps[3].action.container.args == ("http://web/", "from-set")
    assert plan.steps[1].action.build_args == {"TOOLS": "golang:1.22"}


def test_a_values_file_with_a_syntax_error_is_refused_with_its_line():
    with pytest.raises(InvalidRequestError, match="values file, line [23]: not valid YAML"):
        run_values({}, "a: 1\nb: [\n")


async def test_secrets_are_never_written_to_the_store(store, tmp_path):
    folder = app_folder(tmp_path)
    await registrar(store).register(task_settings(folder).to_task(), "config")
    secrets = RunSecrets()
    secret = "pa55-word-never-stored"
    view = await services(store, registrar(store), secrets).run_task(
        "app", {"tools": "golang:1.22", "greeting": "hi"}, secrets={"token": secret})
    run = await store.runs.get(view["id"])
    assert run.secret_names == ("token",) and "token" not in run.values
    await plan_of(planner(store, tmp_path, secrets), run)
    await store.close()
    for written in (tmp_path / "state").rglob("*"):
        if written.is_file():
            assert secret.encode() not in written.read_bytes(), written


async def test_a_run_whose_secrets_were_lost_fails_saying_so(store, tmp_path):
    folder = app_folder(tmp_path)
    await registrar(store).register(task_settings(folder).to_task(), "config")
    held = RunSecrets()
    view = await services(store, registrar(store), held).run_task(
        "app", {"tools": "golang:1.22", "greeting": "hi"}, secrets={"token": "x"})
    # The daemon restarted: a new process holds none.
    executor = RunExecutor(store, planner(store, tmp_path, RunSecrets()), FakeBackend(),
                           tmp_path / "state" / "logs")
    await executor.execute(view["id"])
    run = await store.runs.get(view["id"])
    assert run.status is RunStatus.ERROR
    assert "--set-secret token" in run.error and "restarted" in run.error
    with pytest.raises(SecretsLost):
        RunSecrets().of(run)


async def test_secrets_are_let_go_when_the_run_ends(store, tmp_path):
    secrets = RunSecrets()
    secrets.hold("ca1", {"token": "x"})
    run = await store.runs.create(RunRequest("", Trigger.MANUAL, RunType.QUICK_RUN,
                                             "linux/amd64", secret_names=("token",)))
    await secrets.forget(run)
    assert len(secrets) == 0


async def test_a_secret_for_a_dockerfile_task_is_refused(store, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\n")
    await registrar(store).register(TaskSettings(name="plain", context=str(tmp_path),
                                                 image=["x:1"]).to_task(), "api")
    with pytest.raises(InvalidRequestError, match="secrets are for task files"):
        await services(store, registrar(store), RunSecrets()).run_task(
            "plain", {}, secrets={"token": "x"})


async def test_registration_tracks_the_bases_of_every_build_steps_dockerfile(store, tmp_path):
    # Tags with {{.Run.ID}} and values only a run gives still read as a plan.
    folder = app_folder(tmp_path)
    await registrar(store).register(task_settings(folder).to_task(), "config")
    edges = {(d.base, d.platform, d.kind) for d in await store.graph.dependencies("app")}
    # The tool image is a value only a run gives: not watched (a run's plan still pulls it).
    assert edges == {(BASE, "linux/amd64", DependencyKind.RUNTIME),
                     (f"{REGISTRY}/web:latest", "linux/amd64", DependencyKind.RUNTIME)}


async def test_registration_reads_build_args_from_the_file(store, tmp_path):
    folder = app_folder(tmp_path, TASK_FILE.replace("{{.Values.tools}}", "golang:1.22"))
    await registrar(store).register(task_settings(folder).to_task(), "config")
    assert (TOOLS, "linux/amd64") in {(d.base, d.platform)
                                      for d in await store.graph.dependencies("app")}


async def test_a_step_building_for_another_platform_is_watched_for_it(store, tmp_path):
    folder = app_folder(tmp_path, "version: v1.1.0\nsteps:\n"
                                  "  - build: --platform linux/arm64 -t x:$ID web\n")
    await registrar(store).register(task_settings(folder).to_task(), "config")
    assert {(d.base, d.platform) for d in await store.graph.dependencies("app")} == {
        (BASE, "linux/arm64")}


async def test_a_task_file_with_an_error_is_not_registered(store, tmp_path):
    folder = app_folder(tmp_path, "version: v1.1.0\nsteps:\n  - build: -t x web\n"
                                  "    timout: 5\n")
    with pytest.raises(Exception, match=r"acr-task.yaml, line 4: .*timout"):
        await registrar(store).register(task_settings(folder).to_task(), "config")
    assert await store.tasks.get("app") is None


async def test_a_base_change_runs_a_task_file_task_as_an_auto_run_pinned(store, tmp_path):
    folder = app_folder(tmp_path)
    await registrar(store).register(task_settings(folder).to_task(), "config")
    submitted = Submitted()
    fan_out = FanOut(store, Triggers(store.runs, submitted))
    [run_id] = await fan_out.on_change(DigestChange(BASE, "linux/amd64", "sha256:" + "1" * 64,
                                                    "sha256:" + "2" * 64, None))
    run = await store.runs.get(run_id)
    assert run.run_type is RunType.AUTO_RUN
    assert run.base_change == BaseChange(BASE, "linux/amd64", "sha256:" + "2" * 64)
    run.values.update({"tools": "golang:1.22", "greeting": "hi"})
    secrets = RunSecrets()
    secrets.hold(run.id, {"token": "x"})
    plan = await plan_of(planner(store, tmp_path, secrets), run)
    assert plan.steps[0].action.pinned == {BASE: "sha256:" + "2" * 64}


async def test_a_file_with_an_error_fails_the_run_with_its_line(store, tmp_path):
    folder = app_folder(tmp_path)
    await registrar(store).register(task_settings(folder).to_task(), "config")
    (folder / "acr-task.yaml").write_text("version: v1.1.0\nsteps:\n  - cmd: bash echo hi\n"
                                          "    when: [nobody]\n")
    backend = FakeBackend()
    executor = RunExecutor(store, planner(store, tmp_path), backend,
                           tmp_path / "state" / "logs")
    run = await store.runs.create(RunRequest("app", Trigger.MANUAL, RunType.AUTO_RUN,
                                             "linux/amd64"))
    await executor.execute(run.id)
    run = await store.runs.get(run.id)
    assert run.status is RunStatus.ERROR
    assert run.error.startswith("acr-task.yaml, line 4: ") and "nobody" in run.error
    assert backend.plans == []  # nothing of it ran


async def test_a_quick_run_carries_its_file_and_registry_and_is_a_quick_run(store, tmp_path):
    upload = tmp_path / "state" / "contexts" / "upload-1"
    upload.mkdir(parents=True)
    secrets = RunSecrets()
    view = await services(store, registrar(store), secrets).quick_build(
        {"task_file": "version: v1.1.0\nsteps:\n  - cmd: bash echo {{.Values.word}} $Registry\n"
                      "  - cmd: bash echo {{.Secrets.s}}\n",
         "file": "steps.yaml", "registry": "other.example", "values": {"word": "hello"},
         "secrets": {"s": "quick-secret"}}, upload)
    run = await store.runs.get(view["id"])
    assert (run.run_type, run.task, run.values) == (RunType.QUICK_RUN, "", {"word": "hello"})
    assert "quick-secret" not in run.spec
    plan = await plan_of(planner(store, tmp_path, secrets), run)
    first, second = (step.action.container for step in plan.steps)
    assert first.image == "docker.io/library/busybox:1.36"
    assert first.args == ("echo", "hello", "other.example")
    assert second.args == ("echo", "quick-secret")
    assert "quick-secret" in plan.workspace.secrets


async def test_a_quick_run_with_tags_is_refused(store, tmp_path):
    with pytest.raises(InvalidRequestError, match="names its images in its steps"):
        await services(store, registrar(store), RunSecrets()).quick_build(
            {"task_file": "steps: []\n", "context_url": "https://example.com/r.git",
             "image": ["x:1"]})


def test_a_task_file_task_names_no_images_and_a_dockerfile_task_needs_some(tmp_path):
    with pytest.raises(ValueError, match="task file, which names its images"):
        TaskSettings(name="a", context=str(tmp_path), file="ci.yml", image=["x:1"])
    with pytest.raises(ValueError, match="at least 1 item"):
        TaskSettings(name="a", context=str(tmp_path))
    task = TaskSettings(name="a", context=str(tmp_path), file="ci.yml").to_task()
    assert task.run_type is RunType.AUTO_RUN and task.images == []


@pytest.mark.parametrize("file, run_type", [("acr-task.yaml", RunType.AUTO_RUN),
                                            ("ci.yml", RunType.AUTO_RUN),
                                            ("Dockerfile", RunType.AUTO_BUILD)])
def test_every_trigger_names_its_runs_as_acr_does(file, run_type):
    from basewatch.models import SourceCommit
    from basewatch.tasks import Task, Timer
    from basewatch.triggers.base_image import base_image_run
    from basewatch.triggers.commits import _run
    from basewatch.triggers.manual import task_run
    from basewatch.triggers.source_events import SourceEvent
    from basewatch.triggers.timers import timer_run

    task = Task("app", "https://git.example.com/app.git", [], file=file)
    push = SourceEvent("github", "push", branch="main", commit="a" * 40)
    pull = SourceEvent("github", "pull_request", branch="f", commit="b" * 40,
                       target_branch="main", pull_request=2)
    requests = [
        timer_run(task, Timer("t1", "0 2 * * *"), MOMENT),
        _run(task, push, SourceCommit("a" * 40, "main")),
        _run(task, pull, SourceCommit("b" * 40, "f", 2, "main")),
        base_image_run(task.name, BASE, "linux/amd64", "sha256:" + "1" * 64,
                       run_type=task.run_type),
        task_run(task.name, "linux/amd64", {}, task.run_type),
    ]
    assert [r.run_type for r in requests] == [run_type] * 5
    assert {r.trigger for r in requests} == {Trigger.TIMER, Trigger.COMMIT,
                                             Trigger.PULL_REQUEST, Trigger.IMAGE_UPDATE,
                                             Trigger.MANUAL}


async def test_a_fetched_task_file_naming_other_bases_moves_the_registration(store, tmp_path):
    folder = app_folder(tmp_path)
    changed = []

    async def on_context_changed(task, context):
        changed.append(context)

    plans = RunPlanner(store, Checkouts(tmp_path / "state" / "contexts", 10_000_000),
                       QuickRuns(tmp_path / "state" / "contexts"), REGISTRY,
                       on_context_changed=on_context_changed)
    task = task_settings(folder).to_task()
    await registrar(store).register(task, "config")
    text = (folder / "acr-task.yaml").read_text()
    await plans._follow_task_file(task, text, folder)
    assert changed == [], "as registered"
    (folder / "web" / "Dockerfile").write_text(f"FROM {REGISTRY}/base:2\n")
    await plans._follow_task_file(task, text, folder)
    assert changed == [folder]
