"""A task file's steps on the Docker backend over a fake engine: the graph (parallel and
dependent `when`, retries after `retry_delay`, `repeat`, step timeouts, `ignore_errors`, skips
after a failure, `start_delay`, cancel), the run's own networks and volumes, detached and kept
containers, secrets masked, and nothing left behind, whatever happens."""
from __future__ import annotations

import asyncio
import contextlib
import re
import time

import pytest

from basewatch.builder.backends.docker.backend import DockerBackend
from basewatch.builder.backends.docker.task_run import KEEP_LABEL, RUN_KEY_LABEL, RUN_LABEL
from basewatch.builder.executor import RunExecutor
from basewatch.builder.quick_runs import QuickRuns
from basewatch.errors import BasewatchError, EngineError
from basewatch.models import RunRequest, RunStatus, RunType, Trigger
from basewatch.oci.image_sources import ImageSources
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
from tests.support.fake_engine import DIGEST, FakeContainers
from tests.unit.backends.docker.test_backend import RecordingLog, Registry
from tests.support.stores import open_store


def cmd(step_id: str, *args: str, when=None, container: dict | None = None,
        **control) -> TaskStep:
    return TaskStep(StepControl(step_id, when=when, **control),
                    CmdStep(Container("busybox", args=args, **(container or {}))))


class Ran:
    """What a plan's run reported, logged and raised."""

    def __init__(self, engine: FakeContainers, log: RecordingLog):
        self.engine = engine
        self.log = log
        self.outcomes = {}
        self.order: list[str] = []
        self.error: BaseException | None = None
        self.seconds = 0.0

    async def report(self, outcome) -> None:
        self.outcomes[outcome.step.control.id] = outcome
        self.order.append(outcome.step.control.id)

    def window(self, step_id: str) -> tuple[float, float]:
        (start, end), = [(s, e) for who, s, e in self.engine.runs if who == step_id]
        return start, end

    def left(self) -> list:
        """Containers of the run still on the engine, but kept ones."""
        return [c for c, s in self.engine.containers_.items()
                if s["labels"].get(KEEP_LABEL) != "1"]


def backend_on(engine, **kwargs) -> DockerBackend:
    return DockerBackend(lambda: engine, ImageSources(), Registry(), **kwargs)


async def run_steps(tmp_path, steps, workspace: Workspace | None = None,
                    engine: FakeContainers | None = None, **backend_kwargs) -> Ran:
    engine = engine or FakeContainers()
    ran = Ran(engine, RecordingLog())
    backend = backend_on(engine, **backend_kwargs)
    plan = RunPlan("ca1", "steps", tmp_path, [], steps, workspace or Workspace())
    started = time.monotonic()
    try:
        await backend.run(plan, ran.log, ran.report)
    except BasewatchError as exc:
        ran.error = exc
    finally:
        backend.close()
    ran.seconds = time.monotonic() - started
    return ran


async def test_steps_without_when_run_one_after_the_other(tmp_path):
    ran = await run_steps(tmp_path, [cmd("a", "sleep", "0.2"), cmd("b", "sleep", "0.2"),
                                     cmd("c", "true")])
    assert ran.error is None
    assert ran.order == ["a", "b", "c"]
    assert ran.window("a")[1] <= ran.window("b")[0] and ran.window("b")[1] <= ran.window("c")[0]
    assert all(o.status == "Succeeded" and o.exit_code == 0 for o in ran.outcomes.values())


async def test_steps_with_when_dash_run_at_the_same_time(tmp_path):
    ran = await run_steps(tmp_path, [cmd(s, "sleep", "0.3", when=("-",)) for s in "abc"])
    assert ran.error is None
    windows = [ran.window(s) for s in "abc"]
    assert max(start for start, _ in windows) < min(end for _, end in windows), "overlapped"
    assert ran.seconds < 0.85


async def test_a_step_waits_for_the_ids_its_when_names(tmp_path):
    ran = await run_steps(tmp_path, [
        cmd("slow", "sleep", "0.3", when=("-",)), cmd("fast", "sleep", "0.05", when=("-",)),
        cmd("after", "true", when=("slow", "fast")), cmd("free", "true", when=("-",))])
    assert ran.error is None
    assert ran.window("after")[0] >= max(ran.window("slow")[1], ran.window("fast")[1])
    assert ran.window("free")[1] < ran.window("slow")[1], "waited for nothing"


async def test_a_failed_attempt_is_tried_again_after_retry_delay(tmp_path):
    ran = await run_steps(tmp_path, [cmd("flaky", "flaky", "2", retries=2, retry_delay=0.2)])
    assert ran.error is None
    outcome = ran.outcomes["flaky"]
    assert (outcome.status, outcome.attempts) == ("Succeeded", 3)
    assert ran.seconds >= 0.4, "waited retry_delay twice"
    assert "Step flaky: attempt 1 failed: the container exited with code 1; retrying in 0.2s" \
        in ran.log.text
    assert "Step flaky: Succeeded after" in ran.log.text and "3 attempts" in ran.log.text


async def test_a_step_out_of_retries_fails_the_run_naming_it(tmp_path):
    ran = await run_steps(tmp_path, [cmd("flaky", "flaky", "5", retries=1, retry_delay=0)])
    assert ran.outcomes["flaky"].status == "Failed" and ran.outcomes["flaky"].attempts == 2
    assert isinstance(ran.error, EngineError)
    assert str(ran.error) == "step flaky failed: the container exited with code 1"


async def test_repeat_runs_a_step_again_after_it_succeeded(tmp_path):
    ran = await run_steps(tmp_path, [cmd("again", "echo", "hello", repeat=2)])
    assert ran.outcomes["again"].attempts == 3
    assert [who for who, _, _ in ran.engine.runs] == ["again"] * 3
    assert ran.log.text.count("again | hello") == 3


async def test_a_step_past_its_timeout_fails_and_its_container_is_killed(tmp_path):
    ran = await run_steps(tmp_path, [cmd("hang", "sleep", "30", timeout=0.3),
                                     cmd("next", "true")])
    assert ran.outcomes["hang"].status == "Failed"
    assert ran.outcomes["hang"].error == "timed out after 0.3s"
    assert ran.outcomes["next"].status == "Skipped"
    assert str(ran.error) == "step hang failed: timed out after 0.3s"
    assert ran.seconds < 10 and ran.left() == []


async def test_ignore_errors_neither_fails_the_run_nor_skips_what_follows(tmp_path):
    ran = await run_steps(tmp_path, [cmd("lint", "exit", "2", ignore_errors=True),
                                     cmd("build", "true")])
    assert ran.error is None
    assert (ran.outcomes["lint"].status, ran.outcomes["lint"].exit_code) == ("Failed", 2)
    assert ran.outcomes["build"].status == "Succeeded"
    assert "ignoreErrors: the run goes on" in ran.log.text


async def test_a_failure_skips_what_waits_on_it_and_only_that(tmp_path):
    ran = await run_steps(tmp_path, [
        cmd("test", "exit", "3"), cmd("package", "true"),
        cmd("deploy", "true", when=("package",)), cmd("other", "true", when=("-",))])
    assert ran.outcomes["test"].exit_code == 3
    assert ran.outcomes["package"].status == "Skipped"
    assert ran.outcomes["deploy"].status == "Skipped", "a skip skips what waits on it"
    assert ran.outcomes["other"].status == "Succeeded"
    assert {who for who, _, _ in ran.engine.runs} == {"test", "other"}
    assert str(ran.error) == "step test failed: the container exited with code 3"
    assert "Step package: Skipped (test did not succeed)" in ran.log.text


async def test_start_delay_holds_a_step_back(tmp_path):
    # From before the run: the first step's own start may come late on a loaded machine.
    began = time.monotonic()
    ran = await run_steps(tmp_path, [cmd("first", "true", when=("-",)),
                                     cmd("late", "true", when=("-",), start_delay=0.3)])
    assert ran.window("late")[0] - began >= 0.3
    assert "Step late: starting in 0.3s (startDelay)" in ran.log.text


async def test_cancel_stops_every_step_and_leaves_nothing(tmp_path):
    engine = FakeContainers()
    backend = backend_on(engine)
    ran = Ran(engine, RecordingLog())
    plan = RunPlan("ca1", "steps", tmp_path, [], [
        cmd("server", "sleep", "60", container={"detach": True}),
        cmd("a", "sleep", "60", when=("-",)), cmd("b", "sleep", "60", when=("-",)),
        cmd("after", "true", when=("a",))], Workspace())
    running = asyncio.create_task(backend.run(plan, ran.log, ran.report))
    try:
        while sum(s["running"] for s in engine.containers_.values()) < 3:
            await asyncio.sleep(0.01)
        assert await backend.cancel("ca1")
        with pytest.raises(EngineError, match="the run was canceled"):
            await asyncio.wait_for(running, 20)
    finally:
        backend.close()
    assert engine.containers_ == {} and engine.networks == {} and engine.volumes == {}
    assert not any(who == "after" for who, _, _ in engine.runs)


async def test_the_run_timeout_stops_every_step_and_leaves_nothing(tmp_path):
    engine = FakeContainers()
    backend = backend_on(engine)
    plan = RunPlan("ca1", "steps", tmp_path, [], [cmd("a", "sleep", "60", when=("-",)),
                                                  cmd("b", "sleep", "60", when=("-",))],
                   Workspace())

    async def report(outcome):
        pass

    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await backend.run(plan, RecordingLog(), report)
    finally:
        backend.close()
    assert engine.containers_ == {} and engine.networks == {} and engine.volumes == {}


async def test_the_run_has_its_own_network_and_workspace_removed_at_the_end(tmp_path):
    (tmp_path / "app.txt").write_text("context\n")
    engine = FakeContainers()
    made = {}
    original = engine.run_container

    def run_container(spec, log, created):
        made["networks"] = dict(engine.networks)
        made["volumes"] = dict(engine.volumes)
        made["spec"] = spec
        return original(spec, log, created)

    engine.run_container = run_container
    ran = await run_steps(tmp_path, [cmd("step-1", "true", container={
        "working_directory": "sub", "mounts": (VolumeMount("secrets", "/run/secrets"),)})],
        Workspace(volumes={"secrets": {"token": b"s3cret"}}), engine=engine)
    assert ran.error is None
    spec = made["spec"]
    # Named after the run, and a key of its own: two daemons' run ca1 never share a network.
    prefix = spec.network.removesuffix("-acb_default_network")
    assert re.fullmatch(r"bw-ca1-[0-9a-f]{6}", prefix)
    assert list(made["networks"]) == [f"{prefix}-acb_default_network"]
    assert made["networks"][spec.network] == {RUN_LABEL: "ca1",
                                              RUN_KEY_LABEL: prefix.removeprefix("bw-")}
    assert spec.aliases == ("step-1",)
    assert spec.working_dir == "/workspace/sub"
    assert spec.mounts == ((f"{prefix}-workspace", "/workspace"),
                           (f"{prefix}-volume-secrets", "/run/secrets"))
    assert set(made["volumes"]) == {f"{prefix}-workspace", f"{prefix}-volume-secrets"}
    assert b"app.txt" in engine.files["/workspace"]
    assert b"s3cret" in engine.files["/volumes/secrets"]
    assert engine.networks == {} and engine.volumes == {} and engine.containers_ == {}


async def test_a_network_marked_skip_creation_is_joined_not_made(tmp_path):
    engine = FakeContainers()
    specs = []
    original = engine.run_container
    engine.run_container = lambda spec, log, created: specs.append(spec) or original(
        spec, log, created)
    ran = await run_steps(tmp_path, [cmd("a", "true"), cmd("b", "true", container={
        "network": "mine"})], Workspace(networks=(
            Network("existing", skip_creation=True, is_default=True), Network("mine"))),
        engine=engine)
    assert ran.error is None
    assert specs[0].network == "existing"
    assert re.fullmatch(r"bw-ca1-[0-9a-f]{6}-mine", specs[1].network)
    assert "existing" not in engine.networks


async def test_disable_working_directory_override_keeps_the_image_s_own(tmp_path):
    engine = FakeContainers()
    specs = []
    original = engine.run_container
    engine.run_container = lambda spec, log, created: specs.append(spec) or original(
        spec, log, created)
    await run_steps(tmp_path, [cmd("a", "true", container={
        "disable_working_directory_override": True})], engine=engine)
    assert specs[0].working_dir is None
    assert specs[0].mounts[0][1] == "/workspace", "still mounted"


async def test_a_detached_container_is_removed_at_the_end_unless_kept(tmp_path):
    ran = await run_steps(tmp_path, [
        cmd("server", "sleep", "60", container={"detach": True}),
        cmd("kept", "sleep", "60", container={"detach": True, "keep": True}),
        cmd("client", "true")])
    assert ran.error is None
    assert ran.outcomes["server"].status == "Detached"
    assert ran.left() == []
    kept = list(ran.engine.containers_.values())
    assert len(kept) == 1 and kept[0]["spec"].aliases == ("kept",)
    assert "server | detached output" in ran.log.text
    assert "its container" in ran.log.text and "is kept running (keep)" in ran.log.text


async def test_secrets_are_masked_in_output_lines_and_errors(tmp_path):
    ran = await run_steps(tmp_path, [
        cmd("show", "echo", "token=hunter2-long"),
        cmd("fail", "exit", "1", retries=0)], Workspace(secrets=("hunter2-long", "")))
    assert "hunter2" not in ran.log.text
    assert "show | token=*****" in ran.log.text
    assert "Step show: starting: cmd busybox echo token=*****" in ran.log.text


async def test_privileged_steps_are_refused_unless_allowed(tmp_path):
    steps = [cmd("a", "true", container={"privileged": True})]
    refused = await run_steps(tmp_path, steps)
    assert "privileged containers are refused" in str(refused.error)
    assert refused.engine.runs == [] and refused.engine.networks == {}
    allowed = await run_steps(tmp_path, steps, allow_privileged=True)
    assert allowed.error is None


async def test_docker_steps_are_refused_unless_the_engine_may_be_handed_out(tmp_path):
    steps = [cmd("a", "true"), cmd("docker", "true", container={"engine_access": True})]
    refused = await run_steps(tmp_path, steps)
    assert "step docker: the `docker` alias hands the step the engine" in str(refused.error)
    assert "allow_engine_access: false" in str(refused.error)
    assert refused.engine.runs == [] and refused.engine.networks == {}
    allowed = await run_steps(tmp_path, steps, allow_engine_access=True)
    assert allowed.error is None


async def test_the_host_network_is_refused(tmp_path):
    ran = await run_steps(tmp_path, [cmd("a", "true", container={"network": "host"})])
    assert "network host is refused" in str(ran.error)
    assert ran.engine.runs == []


async def test_an_image_the_engine_lacks_is_pulled_and_pull_true_always_pulls(tmp_path):
    engine = FakeContainers()
    steps = [TaskStep(StepControl("a"), CmdStep(Container("reg.example:5000/tool:1"))),
             TaskStep(StepControl("b"), CmdStep(Container("reg.example:5000/tool:1"))),
             TaskStep(StepControl("c"), CmdStep(Container("busybox", pull=True)))]
    ran = await run_steps(tmp_path, steps, engine=engine)
    assert ran.error is None
    assert engine.pulled == ["reg.example:5000/tool:1", "busybox"]


class StubPlanner:
    """Hands the executor a plan made in the test: task files are planned elsewhere."""

    def __init__(self, tmp_path, steps):
        self.tmp_path, self.steps = tmp_path, steps
        self.quick_runs = QuickRuns(tmp_path / "state" / "contexts")

    async def task_of(self, run):
        return Task(name=run.task, context=str(self.tmp_path), images=[])

    @contextlib.asynccontextmanager
    async def plan(self, run, task, run_log):
        yield RunPlan(run.id, run.task, self.tmp_path, [], self.steps, Workspace())


async def test_the_executor_records_pushes_bases_and_the_failed_step(tmp_path):
    store = await open_store(tmp_path / "state" / "basewatch.db")
    try:
        steps = [
            TaskStep(StepControl("build"), BuildStep("linux/amd64", ["reg.example:5000/app:1"],
                                                     ["reg.example:5000/base:1"])),
            TaskStep(StepControl("push"), (PushStep("reg.example:5000/app:1"),)),
            cmd("test", "exit", "4"), cmd("deploy", "true")]
        backend = backend_on(FakeContainers())
        executor = RunExecutor(store, StubPlanner(tmp_path, steps), backend,
                               tmp_path / "state" / "logs")
        run = await store.runs.create(RunRequest("app", Trigger.MANUAL, RunType.AUTO_RUN,
                                                 "linux/amd64"))
        await executor.execute(run.id)
        finished = await store.runs.get(run.id)
        backend.close()
    finally:
        await store.close()
    assert finished.status is RunStatus.FAILED
    assert finished.error == "step test failed: the container exited with code 4"
    assert [(o.image, o.digest) for o in finished.outputs] == [("reg.example:5000/app:1",
                                                                DIGEST)]
    assert finished.base_digests == {"reg.example:5000/base:1": DIGEST}
    log = (tmp_path / "state" / "logs" / f"{run.id}.log").read_text()
    table = log[log.index("Steps:"):]
    assert "build   build -t reg.example:5000/app:1" in table
    assert "test    cmd busybox" in table and "Failed" in table
    assert "deploy  cmd busybox" in table and "Skipped" in table
    assert "Pushed:\n" in log and f"reg.example:5000/app:1  {DIGEST}" in log
    assert table.index("Pushed:") < table.index(f"Run ID: {run.id} failed")


def test_a_when_naming_an_unknown_step_or_closing_a_cycle_is_refused():
    from basewatch.builder.step_graph import dependencies
    with pytest.raises(BasewatchError, match="names 'nope'"):
        dependencies([cmd("a", "true", when=("nope",))])
    with pytest.raises(BasewatchError, match="cycle"):
        dependencies([cmd("a", "true", when=("b",)), cmd("b", "true", when=("a",))])
    assert dependencies([cmd("a", "true"), cmd("b", "true"), cmd("c", "true", when=("-",))]) \
        == {"a": (), "b": ("a",), "c": ()}


async def test_a_when_that_cannot_run_is_refused_before_anything_is_made(tmp_path):
    ran = await run_steps(tmp_path, [cmd("a", "true", when=("b",)),
                                     cmd("b", "true", when=("a",))])
    assert "cycle" in str(ran.error)
    assert ran.engine.networks == {} and ran.engine.volumes == {} and ran.engine.runs == []


async def test_a_cancel_while_the_workspace_is_made_runs_no_step(tmp_path):
    import threading
    engine = FakeContainers()
    making, release = asyncio.Event(), threading.Event()
    loop = asyncio.get_running_loop()
    original = engine.create_volume

    def create_volume(name, labels):
        original(name, labels)
        loop.call_soon_threadsafe(making.set)
        release.wait(30)

    engine.create_volume = create_volume
    backend = backend_on(engine)
    ran = Ran(engine, RecordingLog())
    running = asyncio.create_task(backend.run(
        RunPlan("ca1", "steps", tmp_path, [], [cmd("a", "true")], Workspace()), ran.log,
        ran.report))
    try:
        await asyncio.wait_for(making.wait(), 20)
        assert await backend.cancel("ca1")
        release.set()
        with pytest.raises(EngineError, match="the run was canceled"):
            await asyncio.wait_for(running, 20)
    finally:
        release.set()
        backend.close()
    assert engine.runs == [] and engine.volumes == {} and engine.networks == {}


async def test_at_most_eight_steps_run_at_once(tmp_path):
    ran = await run_steps(tmp_path, [cmd(f"s{n}", "sleep", "0.2", when=("-",))
                                     for n in range(12)])
    assert ran.error is None
    events = sorted([(start, 1) for _, start, _ in ran.engine.runs]
                    + [(end, -1) for _, _, end in ran.engine.runs])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 8


async def test_a_run_cut_short_twice_still_cleans_up_before_it_ends(tmp_path):
    """The daemon stopping cancels a run's task, maybe again while it cleans up."""
    import threading
    engine = FakeContainers()
    removing, release = asyncio.Event(), threading.Event()
    loop = asyncio.get_running_loop()
    original = engine.remove_network

    def remove_network(name):
        loop.call_soon_threadsafe(removing.set)
        release.wait(30)
        original(name)

    engine.remove_network = remove_network
    backend = backend_on(engine)
    ran = Ran(engine, RecordingLog())
    running = asyncio.create_task(backend.run(
        RunPlan("ca1", "steps", tmp_path, [], [cmd("a", "sleep", "60")], Workspace()),
        ran.log, ran.report))
    try:
        while not engine.runs and not any(s["running"] for s in engine.containers_.values()):
            await asyncio.sleep(0.01)
        running.cancel()
        await asyncio.wait_for(removing.wait(), 20)
        running.cancel()  # again, while the network is being removed
        loop.call_later(0.2, release.set)
        with pytest.raises(asyncio.CancelledError):
            await running
    finally:
        release.set()
        backend.close()
    assert engine.containers_ == {} and engine.networks == {} and engine.volumes == {}
