"""The Docker backend on a fake engine: each platform pulls its own bases, checked against the
registry; pushes and indexes follow the plan; a cancel cuts the engine."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from basewatch.builder.backends.docker.backend import DockerBackend
from basewatch.builder.quick_runs import QuickBuildSpec
from basewatch.errors import EngineError
from basewatch.models import RunStatus, RunType, Trigger, RunRequest
from basewatch.oci.image_sources import ImageSources
from basewatch.run_plan import (
    BuildOutcome,
    BuildStep,
    IndexOutcome,
    IndexStep,
    PushOutcome,
    PushStep,
    RunPlan,
)
from tests.support.fake_engine import DIGEST, FakeEngine
from tests.unit.test_executor import context, make_executor
from tests.support.stores import open_store


@pytest.fixture
async def store(tmp_path):
    store = await open_store(tmp_path / "state" / "basewatch.db")
    yield store
    await store.close()


async def test_each_platform_of_a_quick_build_pulls_the_bases_its_dockerfile_names(store,
                                                                                   tmp_path):
    # TARGETARCH has the value of the platform being built, as in BuildKit: each platform of
    # the build is analysed on its own.
    folder = context(tmp_path, "FROM 127.0.0.1:9/base-${TARGETARCH}:1\n")
    pulled = []

    class RecordingEngine(FakeEngine):
        def pull(self, source, name, platform, auth, log, current=None) -> str:
            pulled.append((source, platform))
            return super().pull(source, name, platform, auth, log, current)

    spec = QuickBuildSpec(context_path=str(folder), push=False)
    run = await store.runs.create(RunRequest("", Trigger.MANUAL, RunType.QUICK_BUILD,
                                             "linux/amd64,linux/arm64", "quick build",
                                             spec=spec.model_dump_json()))
    class SeenDigests:  # the registry holds, for every base, the image the engine pulls
        async def platform_digest(self, ref, platform):
            return SimpleNamespace(digest=DIGEST, index_digest=None)

    await make_executor(store, tmp_path, engine=RecordingEngine(),
                        digests=SeenDigests()).execute(run.id)
    finished = await store.runs.get(run.id)
    assert finished.status is RunStatus.SUCCEEDED, finished.error
    assert pulled == [("127.0.0.1:9/base-amd64:1", "linux/amd64"),
                      ("127.0.0.1:9/base-arm64:1", "linux/arm64")]


class RecordingLog:
    def __init__(self):
        self.text = ""

    def line(self, text: str) -> None:
        self.text += text + "\n"

    def write(self, text: str) -> None:
        self.text += text


class Registry:
    """Every base at DIGEST; pushed indexes recorded; pushes to `refused` refused."""

    def __init__(self, refused: str | None = None):
        self.refused = refused
        self.checked: list[str] = []
        self.indexes: list[tuple[str, list]] = []

    async def platform_digest(self, ref, platform):
        return SimpleNamespace(digest=DIGEST, index_digest=None)

    async def check_registry(self, ref) -> None:
        self.checked.append(str(ref))
        if ref.registry == self.refused:
            raise EngineError(f"registry {ref.registry} refused")

    async def head_manifest(self, ref):
        return SimpleNamespace(media_type="application/vnd.oci.image.manifest.v1+json",
                               digest=ref.digest, size=100)

    async def put_manifest(self, ref, body, media_type) -> str:
        self.indexes.append((str(ref), body))
        return "sha256:" + "i" * 64


def two_platform_plan(tmp_path) -> RunPlan:
    amd, arm = "reg.example:5000/app:1-linux-amd64", "reg.example:5000/app:1-linux-arm64"
    return RunPlan("ca1", "app", tmp_path, ["reg.example:5000/app:1"], [
        BuildStep("linux/amd64", [amd], ["reg.example:5000/base:1"]), PushStep(amd, "linux/amd64"),
        BuildStep("linux/arm64", [arm], ["reg.example:5000/base:1"]), PushStep(arm, "linux/arm64"),
        IndexStep("reg.example:5000/app:1", [("linux/amd64", amd), ("linux/arm64", arm)])])


async def test_a_plan_of_two_platforms_reports_every_step_and_pushes_one_index(tmp_path):
    registry, engine, run_log = Registry(), FakeEngine(), RecordingLog()
    backend = DockerBackend(lambda: engine, ImageSources(), registry)
    outcomes = []

    async def report(outcome):
        outcomes.append(outcome)

    plan = two_platform_plan(tmp_path)
    try:
        await backend.run(plan, run_log, report)
    finally:
        backend.close()
    assert registry.checked == ["reg.example:5000/app:1"], "checked before anything is built"
    assert [type(o) for o in outcomes] == [BuildOutcome, PushOutcome, BuildOutcome, PushOutcome,
                                           IndexOutcome]
    assert outcomes[0].base_digests == {"reg.example:5000/base:1": DIGEST}
    assert outcomes[-1].digest == "sha256:" + "i" * 64
    assert [ref for ref, _ in registry.indexes] == ["reg.example:5000/app:1"]
    assert "Pushed the index reg.example:5000/app:1 (linux/amd64, linux/arm64)" in run_log.text
    assert not await backend.cancel("ca1"), "the run has ended"


async def test_a_push_to_a_refused_registry_stops_the_plan_before_the_build(tmp_path):
    registry, engine = Registry(refused="reg.example:5000"), FakeEngine()
    backend = DockerBackend(lambda: engine, ImageSources(), registry)
    outcomes = []

    async def report(outcome):
        outcomes.append(outcome)

    try:
        with pytest.raises(EngineError, match="refused"):
            await backend.run(two_platform_plan(tmp_path), RecordingLog(), report)
    finally:
        backend.close()
    assert outcomes == [] and not engine.building.is_set()


async def test_cancel_cuts_the_engine_of_the_run_in_progress(tmp_path):
    class CancelableEngine(FakeEngine):
        def cancel(self) -> None:
            self.fail = EngineError("build was canceled")
            self.loop.call_soon_threadsafe(self.release.set)

    engine = CancelableEngine()
    engine.release = asyncio.Event()
    backend = DockerBackend(lambda: engine, ImageSources(), Registry())

    async def report(outcome):
        pass

    try:
        running = asyncio.create_task(backend.run(two_platform_plan(tmp_path), RecordingLog(),
                                                  report))
        await asyncio.wait_for(engine.building.wait(), 30)
        assert await backend.cancel("ca1")
        with pytest.raises(EngineError, match="canceled"):
            await asyncio.wait_for(running, 30)
    finally:
        backend.close()


async def test_a_pinned_base_is_pulled_by_its_digest_without_asking_the_registry(tmp_path):
    pinned = "sha256:" + "b" * 64
    pulled = []

    class RecordingEngine(FakeEngine):
        def pull(self, source, name, platform, auth, log, current=None) -> str:
            pulled.append((source, name, current))
            return super().pull(source, name, platform, auth, log, current)

    class NoTagLookups(Registry):
        async def platform_digest(self, ref, platform):
            raise AssertionError(f"asked the registry for {ref}")

    backend = DockerBackend(RecordingEngine, ImageSources(), NoTagLookups())
    outcomes = []

    async def report(outcome):
        outcomes.append(outcome)

    plan = RunPlan("ca1", "app", tmp_path, ["reg.example:5000/app:1"], [
        BuildStep("linux/amd64", ["reg.example:5000/app:1"], ["reg.example:5000/base:1"],
                  pinned={"reg.example:5000/base:1": pinned})])
    try:
        await backend.run(plan, RecordingLog(), report)
    finally:
        backend.close()
    assert pulled == [(f"reg.example:5000/base@{pinned}", "reg.example:5000/base:1", pinned)]
    assert outcomes[0].base_digests == {"reg.example:5000/base:1": pinned}
