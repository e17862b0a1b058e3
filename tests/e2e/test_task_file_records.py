"""A task file's run on the real engine and registries: each step's outcome kept with the run
(`task show-run`, JSON and table), the log's closing summary at the end of `task logs`, a run
given its own registry (`task run --registry`), and a task built on a task file's pushed image
rebuilt after it when the task file's own base is patched."""
from __future__ import annotations

import asyncio
import json

import pytest

from basewatch.config import Config, RegistrySettings, TaskSettings
from basewatch.daemon import Daemon
from basewatch.models import RunStatus
from tests.e2e.test_daemon import health, start_daemon, stop
from tests.e2e.test_graph import TOKEN
from tests.e2e.test_quick_build import cli, tag_exists
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

STEPS = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/hello:$ID .
  - id: push
    push: ["$Registry/hello:$ID"]
  - id: check
    cmd: bash sh -c 'exit 3'
  - id: deploy
    cmd: bash echo deployed
"""


@pytest.fixture
def daemon(tmp_path, start_registry, base_images, docker_host):
    first, second = start_registry(), start_registry()
    base_images.build(f"{first.address}/base:1", {"/etc/release": "1\n"})
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text(f"FROM {first.address}/base:1\nRUN echo hello > /hello\n")
    (app / "acr-task.yaml").write_text(STEPS)
    config = {"poll_interval": "1h", "api_token_env": "API_TOKEN",
              "registries": [{"host": first.address}, {"host": second.address}],
              "registry": first.address, "aliases": {"bash": f"{first.address}/base:1"},
              "tasks": [{"name": "app", "context": str(app), "file": "acr-task.yaml"}]}
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    health(url, process)
    yield url, first.address, second.address
    stop(process)


async def test_a_run_s_steps_are_kept_and_shown_and_its_registry_is_its_own(daemon):
    url, first, second = daemon
    code, out, err = await cli("task", "run", "app", "--registry", second, url=url)
    assert code == 1, out + err
    run_id = out.splitlines()[0].rsplit(" ", 1)[-1]
    # Followed as it ran (the same stream `task logs` follows): the summary came at its end.
    followed = out[out.rindex("Steps:"):].splitlines()
    assert any(" deploy " in line and line.rstrip().endswith("Skipped") for line in followed)
    assert f"Run ID: {run_id} failed: step check failed" in followed[-1]
    # Pushed to the run's own registry, not the config's.
    assert tag_exists(second, "hello", run_id) and not tag_exists(first, "hello", run_id)

    code, out, err = await cli("task", "show-run", "--run-id", run_id, url=url)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["registry"] == second and shown["status"] == "Failed"
    steps = {s["id"]: s for s in shown["steps"]}
    assert [s["id"] for s in shown["steps"]] == ["build", "push", "check", "deploy"]
    assert (steps["build"]["status"], steps["build"]["kind"]) == ("Succeeded", "build")
    assert steps["push"]["action"] == f"push {second}/hello:{run_id}"
    assert (steps["check"]["status"], steps["check"]["exit_code"]) == ("Failed", 3)
    assert steps["deploy"]["status"] == "Skipped"
    assert steps["push"]["started_after_seconds"] >= steps["build"]["started_after_seconds"] \
        + steps["build"]["duration_seconds"] - 0.01

    code, out, err = await cli("task", "show-run", "--run-id", run_id, "-o", "table", url=url)
    assert code == 0, err
    check = next(line for line in out.splitlines() if line.startswith("check "))
    assert check.split()[:3] == ["check", "cmd", f"{first}/base:1"] and "Failed" in check
    assert "the container exited with code 3" in check

    # The log's closing summary, then the run's end, last in `task logs`.
    code, log, err = await cli("task", "logs", "--run-id", run_id, url=url)
    assert code == 0, err
    tail = log[log.rindex("Steps:"):].splitlines()  # each line after its time stamp
    assert any(" deploy " in line and line.rstrip().endswith("Skipped") for line in tail)
    assert f"Run ID: {run_id} failed: step check failed" in tail[-1]

    # Without --registry: the config's.
    code, out, err = await cli("task", "run", "app", url=url)
    second_run = out.splitlines()[0].rsplit(" ", 1)[-1]
    assert tag_exists(first, "hello", second_run)
    code, out, _ = await cli("task", "show-run", "--run-id", second_run, url=url)
    assert json.loads(out)["registry"] is None


async def test_a_task_built_on_a_task_file_s_push_is_rebuilt_after_it(
        tmp_path, registry, base_images, docker_host):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/root:1", {"/etc/release": "1\n"})
    # base:stable as an earlier run left it, so web can be registered on it.
    await asyncio.to_thread(base_images.build, f"{reg}/base:stable", {"/etc/release": "1\n"})
    base = tmp_path / "base"
    base.mkdir()
    (base / "Dockerfile").write_text(f"FROM {reg}/root:1\nRUN echo base > /base\n")
    (base / "acr-task.yaml").write_text(
        "version: v1.1.0\nsteps:\n  - build: -t $Registry/base:stable -t base:$ID .\n"
        "  - push: [$Registry/base:stable]\n")
    web = tmp_path / "web"
    web.mkdir()
    (web / "Dockerfile").write_text(f"FROM {reg}/base:stable\nRUN echo web > /web\n")
    config = Config(state_dir=tmp_path / "state", listen="127.0.0.1:0", poll_interval=3600,
                    registries=[RegistrySettings(host=reg)], registry=reg,
                    tasks=[TaskSettings(name="base", context=base, file="acr-task.yaml"),
                           TaskSettings(name="web", context=web,
                                        image=[f"{reg}/web:{{{{.Run.ID}}}}"])])
    daemon = Daemon(config, docker_host)
    await daemon.start()
    try:
        graph = await daemon.registrar.graph()
        assert graph.ancestors("web") == {"base"}
        view = await daemon.services.graph_view()
        assert {t["name"]: t["downstream"] for t in view["tasks"]}["base"] == ["web"]

        await asyncio.to_thread(base_images.build, f"{reg}/root:1",
                                {"/etc/release": "1\n", "/etc/patch": "fixed\n"})
        assert await daemon.watcher.check_references(lambda ref: ref == f"{reg}/root:1") == 1

        async def web_done():
            runs = await daemon.store.runs.list(task="web")
            return runs if runs and runs[0].status.finished else None

        [web_run] = await wait_for(web_done, 90, "the web rebuild, cascaded from base")
        [base_run] = await daemon.store.runs.list(task="base")
        assert base_run.status is RunStatus.SUCCEEDED, base_run.error
        assert web_run.status is RunStatus.SUCCEEDED, web_run.error
        assert web_run.started_at >= base_run.finished_at, "web is built after base pushes"
        (pushed,) = base_run.outputs
        assert pushed.image == f"{reg}/base:stable"
        assert web_run.base_digests[f"{reg}/base:stable"] == pushed.digest
        patched = await asyncio.to_thread(base_images.read_file, web_run.outputs[0].image,
                                          "/etc/patch")
        assert patched == "fixed\n", "the patch reached web through the task file's image"
        assert [s.status for s in await daemon.store.runs.steps(base_run.id)] == [
            "Succeeded", "Succeeded"]
    finally:
        await daemon.stop()
