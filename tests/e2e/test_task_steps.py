"""A task file's plan carried out on the real engine and registry, through the executor:
ACR's build-run-test-deploy scenario on busybox images, and what a failed test stops; detach
and keep, the shared workspace, a custom network, a secret volume, masked secrets, the engine
given to a step; nothing left behind."""
from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from basewatch.builder.backends.docker.backend import DockerBackend
from basewatch.builder.backends.docker.docker_engine import DockerEngine
from basewatch.builder.backends.docker.task_run import KEEP_LABEL, RUN_LABEL
from basewatch.builder.executor import RunExecutor
from basewatch.builder.quick_runs import QuickRuns
from basewatch.config import RegistrySettings
from basewatch.models import RunRequest, RunStatus, RunType, Trigger
from basewatch.oci.image_sources import ImageSources
from basewatch.oci.registry import RegistryClient
from basewatch.run_plan import (
    BuildStep,
    CmdStep,
    Container,
    Network,
    PushStep,
    RunPlan,
    StepControl,
    TaskStep,
    VolumeMount,
    Workspace,
)
from basewatch.tasks import Task
from tests.support.stores import open_store
from stack import native_platform

pytestmark = pytest.mark.e2e

PLATFORM = native_platform()
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def cmd(step_id: str, image: str, *args: str, when=None, control: dict | None = None,
        **container) -> TaskStep:
    return TaskStep(StepControl(step_id, when=when, **(control or {})),
                    CmdStep(Container(image, args=args, **container)))


def sh(step_id: str, image: str, script: str, when=None, control=None, **container):
    return cmd(step_id, image, "sh", "-c", script, when=when, control=control, **container)


class StubPlanner:
    """Hands the executor the plan the test made: task files are read elsewhere."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.quick_runs = QuickRuns(folder / "state" / "contexts")
        self.plans: dict[str, tuple[Path, list, Workspace]] = {}

    async def task_of(self, run):
        return Task(name=run.task, context=str(self.folder), images=[], timeout=170)

    @contextlib.asynccontextmanager
    async def plan(self, run, task, run_log):
        context, steps, workspace = self.plans[run.task]
        yield RunPlan(run.id, run.task, context, [], steps, workspace)


class Runs:
    """Plans run through the executor and the Docker backend, on the real engine."""

    def __init__(self, folder: Path, docker_host: str, reg: str):
        self.folder, self.docker_host, self.reg = folder, docker_host, reg
        self.planner = StubPlanner(folder)

    async def __aenter__(self):
        self.store = await open_store(self.folder / "state" / "basewatch.db")
        self.registry = RegistryClient([RegistrySettings(host=self.reg)])
        self.backend = DockerBackend(lambda: DockerEngine(self.docker_host),
                                     ImageSources([RegistrySettings(host=self.reg)]),
                                     self.registry, allow_engine_access=True)
        self.executor = RunExecutor(self.store, self.planner, self.backend,
                                    self.folder / "state" / "logs")
        return self

    async def __aexit__(self, *exc):
        self.backend.close()
        await self.registry.close()
        await self.store.close()

    async def run(self, name: str, steps: list, workspace: Workspace | None = None,
                  context: Path | None = None):
        self.planner.plans[name] = (context or self.folder / "empty", steps,
                                    workspace or Workspace())
        run = await self.store.runs.create(RunRequest(name, Trigger.MANUAL, RunType.AUTO_RUN,
                                                      PLATFORM))
        await self.executor.execute(run.id)
        finished = await self.store.runs.get(run.id)
        log = (self.folder / "state" / "logs" / f"{run.id}.log").read_text()
        return finished, log


@pytest.fixture
async def runs(tmp_path, docker_host, registry):
    (tmp_path / "empty").mkdir()
    async with Runs(tmp_path, docker_host, registry.address) as runs:
        yield runs


@pytest.fixture
def busybox(base_images, registry) -> str:
    """A busybox image on the engine, and in the registry, for steps to run and build on."""
    image = f"{registry.address}/busybox:1"
    base_images.build(image)
    return image


def in_registry(image: str) -> bool:
    repository, _, tag = image.rpartition(":")
    host, _, name = repository.partition("/")
    request = urllib.request.Request(
        f"http://{host}/v2/{name}/manifests/{tag}", method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                           "application/vnd.oci.image.manifest.v1+json"})
    try:
        with _OPENER.open(request, timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def left_on(docker_client, run_id: str) -> list[str]:
    """The run's containers, networks and volumes still on the engine."""
    label = {"label": f"{RUN_LABEL}={run_id}"}
    return ([c.name for c in docker_client.containers.list(all=True, filters=label)]
            + [n.name for n in docker_client.networks.list(filters=label)]
            + [v.name for v in docker_client.volumes.list(filters=label)])


def scenario_context(folder: Path, busybox: str) -> Path:
    """A web app, its tests and a chart, as one repository."""
    context = folder / "repo"
    (context / "web").mkdir(parents=True)
    (context / "web" / "index.html").write_text("hello from web\n")
    (context / "web" / "Dockerfile").write_text(
        f"FROM {busybox}\nCOPY index.html /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n')
    (context / "tests").mkdir()
    # busybox wget without -T (see NOTES.md); the step's timeout bounds it.
    (context / "tests" / "test.sh").write_text(
        "for i in $(seq 1 100); do\n"
        "  if page=$(wget -q -O - http://web/index.html); then\n"
        '    echo "$page" | grep -q "$EXPECT" && echo "tests passed" && exit 0\n'
        '    echo "tests failed: $page"; exit 1\n'
        "  fi\n  sleep 0.1\ndone\nexit 1\n")
    (context / "tests" / "Dockerfile").write_text(
        f'FROM {busybox}\nCOPY test.sh /test.sh\nCMD ["sh", "/test.sh"]\n')
    (context / "chart").mkdir()
    (context / "chart" / "values.yaml").write_text("replicas: 2\n")
    return context


def scenario(reg: str, busybox: str, tag: str, expect: str) -> list[TaskStep]:
    web, tests = f"{reg}/web:{tag}", f"{reg}/web-tests:{tag}"
    return [
        TaskStep(StepControl("build-web", when=("-",)),
                 BuildStep(PLATFORM, [web], [busybox], context="web")),
        TaskStep(StepControl("build-tests", when=("-",)),
                 BuildStep(PLATFORM, [tests], [busybox], context="tests")),
        cmd("web", web, when=("build-web",), detach=True),
        cmd("test", tests, when=("web", "build-tests"), control={"timeout": 60},
            env=(f"EXPECT={expect}",)),
        sh("package", busybox, "tar -cf chart.tar -C chart . && echo packaged",
           when=("test",)),
        sh("deploy", busybox, "tar -tf chart.tar | grep -q values.yaml && "
                              "echo deployed $(tar -xOf chart.tar ./values.yaml)"),
        TaskStep(StepControl("push", when=("deploy",)), (PushStep(web), PushStep(tests))),
    ]


async def test_build_run_test_package_deploy_push(runs, busybox, docker_client, tmp_path):
    reg = runs.reg
    context = scenario_context(tmp_path, busybox)
    run, log = await runs.run("app", scenario(reg, busybox, "ok", "hello from web"),
                              context=context)
    assert run.status is RunStatus.SUCCEEDED, f"{run.error}\n{log}"
    assert "test | tests passed" in log
    assert "package | packaged" in log and "deploy | deployed replicas: 2" in log
    assert {o.image for o in run.outputs} == {f"{reg}/web:ok", f"{reg}/web-tests:ok"}
    assert in_registry(f"{reg}/web:ok") and in_registry(f"{reg}/web-tests:ok")
    assert run.base_digests and set(run.base_digests) == {busybox}
    # The two builds ran at the same time: each started before the other ended.
    assert log.index("Step build-tests: starting") < log.index("Step build-web: Succeeded")
    assert log.index("Step build-web: starting") < log.index("Step build-tests: Succeeded")
    summary = log[log.index("Steps:"):]
    for step in ("build-web", "build-tests", "web", "test", "package", "deploy", "push"):
        assert f"  {step} " in summary
    assert "Detached" in summary and f"{reg}/web:ok" in summary[summary.index("Pushed:"):]
    assert left_on(docker_client, run.id) == []

    failing = scenario(reg, busybox, "bad", "goodbye")
    run, log = await runs.run("app-failing", failing, context=context)
    assert run.status is RunStatus.FAILED
    assert run.error == "step test failed: the container exited with code 1"
    assert "test | tests failed: hello from web" in log
    for step in ("package", "deploy", "push"):
        assert f"Step {step}: Skipped" in log
    assert "packaged" not in log.replace("Step package", "") and "deployed" not in log
    assert not in_registry(f"{reg}/web:bad") and run.outputs == []
    assert left_on(docker_client, run.id) == [], "nothing left running"


async def test_detached_containers_go_at_the_end_unless_kept(runs, busybox, docker_client):
    run, log = await runs.run("detach", [
        cmd("server", busybox, "httpd", "-f", "-p", "80", detach=True),
        cmd("kept", busybox, "sleep", "300", detach=True, keep=True),
        sh("client", busybox, "echo reached && true")])
    try:
        assert run.status is RunStatus.SUCCEEDED, log
        kept = docker_client.containers.list(filters={"label": f"{KEEP_LABEL}=1"})
        assert [c.labels[RUN_LABEL] for c in kept] == [run.id]
        assert kept[0].status == "running"
        left = left_on(docker_client, run.id)
        assert [n for n in left if "holder" in n or "server" in n] == []
        assert "is kept running (keep)" in log
    finally:
        for container in docker_client.containers.list(
                all=True, filters={"label": f"{RUN_LABEL}={run.id}"}):
            container.remove(force=True)
        for volume in docker_client.volumes.list(filters={"label": f"{RUN_LABEL}={run.id}"}):
            volume.remove(force=True)


async def test_a_file_one_step_writes_the_next_reads_and_builds(runs, busybox, tmp_path,
                                                                 docker_client):
    context = tmp_path / "repo"
    context.mkdir()
    (context / "given.txt").write_text("from the context\n")
    image = f"{runs.reg}/generated:1"
    run, log = await runs.run("workspace", [
        sh("write", busybox, "cat given.txt > made.txt && echo 'written by a step' >> made.txt"
           f" && mkdir gen && printf 'FROM {busybox}\\nCOPY made.txt /made.txt\\n'"
           " > gen/Dockerfile && cp made.txt gen/"),
        sh("read", busybox, "pwd && cat /workspace/made.txt"),
        TaskStep(StepControl("build"), BuildStep(PLATFORM, [image], [busybox], context="gen",
                                                 no_cache=True)),
        cmd("check", image, "cat", "/made.txt"),
    ], context=context)
    assert run.status is RunStatus.SUCCEEDED, log
    assert "read | /workspace" in log
    assert "read | from the context" in log and "read | written by a step" in log
    assert "check | written by a step" in log
    assert left_on(docker_client, run.id) == []


async def test_a_custom_network_and_a_secret_volume(runs, busybox, docker_client):
    workspace = Workspace(
        networks=(Network("default", is_default=True), Network("backend")),
        volumes={"creds": {"token.txt": b"s3cr3t-value\n"}}, secrets=("s3cr3t-value",))
    run, log = await runs.run("network", [
        cmd("db", busybox, "httpd", "-f", "-p", "80", detach=True, network="backend"),
        sh("client", busybox,
           "for i in $(seq 1 100); do wget -q -O /dev/null http://db/ 2>&1 | grep -q 404 "
           "&& echo db reached && break; wget -q -O /dev/null http://db/ && break; sleep 0.1;"
           " done", network="backend", control={"timeout": 60}),
        sh("isolated", busybox, "if wget -q -O /dev/null http://db/ 2>/dev/null; "
                                "then echo reached; else echo not reached; fi"),
        sh("secret", busybox, "cat /run/creds/token.txt",
           mounts=(VolumeMount("creds", "/run/creds"),)),
    ], workspace)
    assert run.status is RunStatus.SUCCEEDED, log
    assert "client | db reached" in log
    assert "isolated | not reached" in log, "the default network does not reach backend's"
    assert "secret | *****" in log and "s3cr3t-value" not in log
    networks = [n.name for n in docker_client.networks.list()]
    assert not any(run.id in name for name in networks)
    assert left_on(docker_client, run.id) == []


async def test_secrets_are_masked_and_a_timeout_leaves_nothing(runs, busybox, docker_client):
    secret = "pa55w0rd-for-the-test"
    run, log = await runs.run("secrets", [
        sh("show", busybox, f"echo the password is {secret}"),
        sh("hang", busybox, "sleep 300", control={"timeout": 1}),
    ], Workspace(secrets=(secret,)))
    assert run.status is RunStatus.FAILED
    assert run.error == "step hang failed: timed out after 1s"
    assert secret not in log and "show | the password is *****" in log
    assert "sh -c echo the password is *****" in log
    assert left_on(docker_client, run.id) == []


async def test_a_step_given_the_engine_finds_its_socket(runs, busybox, docker_host,
                                                         docker_client):
    if not docker_host.startswith("unix://"):
        pytest.skip("the socket is mounted for a local engine only")
    run, log = await runs.run("engine", [
        sh("docker", busybox, "test -S /var/run/docker.sock && echo engine given",
           engine_access=True),
        sh("plain", busybox, "test -S /var/run/docker.sock || echo no engine")])
    assert run.status is RunStatus.SUCCEEDED, log
    assert "docker | engine given" in log and "plain | no engine" in log


async def test_cancel_stops_the_steps_and_leaves_nothing(runs, busybox, docker_client):
    runs.planner.plans["cancel"] = (runs.folder / "empty", [
        cmd("server", busybox, "httpd", "-f", detach=True),
        cmd("a", busybox, "sleep", "300", when=("-",)),
        cmd("b", busybox, "sleep", "300", when=("-",))], Workspace())
    run = await runs.store.runs.create(RunRequest("cancel", Trigger.MANUAL, RunType.AUTO_RUN,
                                                  PLATFORM))
    executing = asyncio.create_task(runs.executor.execute(run.id))
    label = {"label": f"{RUN_LABEL}={run.id}"}
    for _ in range(600):
        if len(await asyncio.to_thread(docker_client.containers.list, filters=label)) >= 3:
            break
        await asyncio.sleep(0.05)
    assert await runs.executor.cancel(run.id)
    await asyncio.wait_for(executing, 60)
    run = await runs.store.runs.get(run.id)
    assert run.status is RunStatus.CANCELED
    assert left_on(docker_client, run.id) == []


async def test_entrypoint_user_env_and_working_directory(runs, busybox, docker_client):
    run, log = await runs.run("container", [
        cmd("who", busybox, "-c", 'echo "$(id -u) $GREETING $(pwd)"', entrypoint="sh",
            user="1234", env=("GREETING=hello",), working_directory="sub/dir"),
        cmd("own", busybox, "pwd", disable_working_directory_override=True),
    ])
    # A working directory that is not there yet is made by the engine, inside the workspace.
    assert "who | 1234 hello /workspace/sub/dir" in log, log
    assert "own | /\n" in log, "the image's own working directory"
    assert run.status is RunStatus.SUCCEEDED
    assert left_on(docker_client, run.id) == []
