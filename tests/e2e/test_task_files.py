"""Task files everywhere a task can be, against a running daemon, the real engine and registry:
`basewatch run -f` on a folder and on /dev/null, `basewatch run --cmd`, a secret masked in the
log and stored nowhere, and a config task whose file is a task file rebuilt (an AutoRun) when the
base of one of its build steps' Dockerfiles is patched."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import basewatch.builder.backends.docker as docker_backend
from tests.e2e.test_daemon import health, start_daemon, stop
from tests.e2e.test_graph import TOKEN
from tests.e2e.test_quick_build import cli, tag_exists
from tests.support.waiting import wait_for


def _backend_takes_task_steps() -> bool:
    folder = Path(docker_backend.__file__).parent
    return any("TaskStep" in source.read_text() for source in folder.glob("*.py"))


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not _backend_takes_task_steps(),
        reason="the Docker backend cannot carry out a task file's steps (TaskStep) yet: its "
               "part of issue 11 lands separately; these run once it is merged"),
]

BUILD_AND_PUSH = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/hello:$ID -t $Registry/hello:latest web
  - id: greet
    cmd: $Registry/hello:$ID cat /greeting
  - push: ["$Registry/hello:$ID", "hello:latest"]
"""


@pytest.fixture
def daemon(tmp_path, registry, base_images, docker_host):
    base_images.build(f"{registry.address}/base:1", {"/etc/release": "1\n"})
    process, url = start_daemon(_config(registry.address), tmp_path, docker_host,
                                env={"API_TOKEN": TOKEN})
    health(url, process)
    yield url, registry.address
    stop(process)


def _config(registry: str, **more) -> dict:
    return {"poll_interval": "1h", "registries": [{"host": registry}],
            "api_token_env": "API_TOKEN", "max_context_bytes": 200_000,
            # the task files' `bash` is a busybox image of the test's own
            "aliases": {"bash": f"{registry}/base:1"}, **more}


def web_app(tmp_path: Path, registry: str, task_file: str = BUILD_AND_PUSH) -> Path:
    app = tmp_path / "app"
    (app / "web").mkdir(parents=True)
    (app / "web" / "Dockerfile").write_text(f"FROM {registry}/base:1\nCOPY greeting /\n")
    (app / "web" / "greeting").write_text("hello from the web image\n")
    (app / "acr-task.yaml").write_text(task_file)
    return app


async def run_json(run_id: str, url: str) -> dict:
    code, out, err = await cli("task", "show-run", "--run-id", run_id, url=url)
    assert code == 0, err
    return json.loads(out)


async def test_run_a_task_file_on_a_folder(tmp_path, daemon):
    url, reg = daemon
    # Larger than a header takes: the file goes in a part of the request's own.
    app = web_app(tmp_path, reg, BUILD_AND_PUSH + "# " + "padding " * 4000 + "\n")
    code, out, err = await cli("run", "-f", str(app / "acr-task.yaml"), str(app), url=url)
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "Queued a run with ID: ca1"
    assert "hello from the web image" in out, "each step's output is streamed"
    assert lines[-1].startswith("Run ID: ca1 was successful after ")
    assert tag_exists(reg, "hello", "ca1") and tag_exists(reg, "hello", "latest")
    shown = await run_json("ca1", url)
    assert (shown["type"], shown["trigger"], shown["status"]) == ("QuickRun", "Manual",
                                                                  "Succeeded")


async def test_run_a_task_file_without_a_context_with_values(tmp_path, daemon):
    url, _ = daemon
    task_file = tmp_path / "greet.yaml"
    task_file.write_text("version: v1.1.0\nsteps:\n"
                         "  - cmd: bash echo {{.Values.greeting}} from {{.Run.ID}}\n")
    values = tmp_path / "values.yaml"
    values.write_text("greeting: from-the-file\n")
    code, out, err = await cli("run", "-f", str(task_file), "--values", str(values),
                               "--set", "greeting=from-set", "/dev/null", url=url)
    assert code == 0, out + err
    assert "from-set from ca1" in out and "from-the-file" not in out


async def test_run_one_command(daemon):
    url, _ = daemon
    code, out, err = await cli("run", "--cmd", "bash echo hello-from-cmd", "/dev/null", url=url)
    assert code == 0, out + err
    assert "hello-from-cmd" in out
    code, out, err = await cli("run", "--cmd", "bash false", "/dev/null", url=url)
    assert code == 1, "the exit code is the run's result"
    assert "Status: Failed" in err


async def test_a_secret_is_masked_in_the_log_and_stored_nowhere(tmp_path, daemon):
    url, _ = daemon
    secret = "s3cr3t-v4lue-for-e2e"
    task_file = tmp_path / "secret.yaml"
    task_file.write_text("version: v1.1.0\nsteps:\n"
                         "  - cmd: bash echo the token is {{.Secrets.token}}\n"
                         "  - cmd: bash sh -c 'echo the env has $TOKEN'\n"
                         "    env: [\"TOKEN={{.Secrets.token}}\"]\n")
    code, out, err = await cli("run", "-f", str(task_file), "--set-secret", f"token={secret}",
                               "/dev/null", url=url)
    assert code == 0, out + err
    assert "the token is *****" in out and "the env has *****" in out
    assert secret not in out + err
    code, log, _ = await cli("task", "logs", "--run-id", "ca1", url=url)
    assert "the token is *****" in log and secret not in log
    state = tmp_path / "state"
    for written in state.rglob("*"):
        if written.is_file():
            assert secret.encode() not in written.read_bytes(), written


async def test_a_task_file_task_is_rebuilt_when_a_build_steps_base_is_patched(
        tmp_path, registry, base_images, docker_host):
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    app = web_app(tmp_path, reg)
    process, url = start_daemon(
        _config(reg, poll_interval="1s",
                tasks=[{"name": "app", "context": str(app), "file": "acr-task.yaml"}]),
        tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    try:
        health(url, process)
        code, out, _ = await cli("task", "show", "app", url=url)
        assert [b["reference"] for b in json.loads(out)["bases"]] == [f"{reg}/base:1"]

        await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "2\n"})

        async def rebuilt():
            code, out, _ = await cli("task", "list-runs", "--name", "app", url=url)
            return code == 0 and "Succeeded" in out and "Image Update" in out
        await wait_for(rebuilt, 150, "the task file task's rebuild")
        shown = await run_json("ca1", url)
        assert (shown["type"], shown["trigger"]) == ("AutoRun", "Image Update")
        assert shown["base_change"]["reference"] == f"{reg}/base:1"
        assert tag_exists(reg, "hello", "ca1")
        assert await asyncio.to_thread(base_images.read_file, f"{reg}/hello:ca1",
                                       "/etc/release") == "2\n"
    finally:
        stop(process)


async def test_task_create_with_a_task_file_and_task_run_with_values_and_a_secret(
        tmp_path, registry, base_images, docker_host):
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    process, url = start_daemon(_config(reg, local_contexts_root="apps"), tmp_path,
                                docker_host, env={"API_TOKEN": TOKEN})
    try:
        health(url, process)
        app = web_app(tmp_path / "apps", reg, BUILD_AND_PUSH.replace(
            "cat /greeting", "sh -c 'cat /greeting; echo {{.Values.word}} {{.Secrets.key}}'"))
        code, out, err = await cli("task", "create", "ci", "--context", str(app), "-f",
                                   "acr-task.yaml", url=url)
        assert code == 0, err
        created = json.loads(out)
        assert created["image"] == [] and created["file"] == "acr-task.yaml"
        assert [b["reference"] for b in created["bases"]] == [f"{reg}/base:1"]

        values = tmp_path / "values.yaml"
        values.write_text("word: from-the-file\n")
        code, out, err = await cli("task", "run", "ci", "--values", str(values), "--set",
                                   "word=from-set", "--set-secret", "key=k3y-never-shown",
                                   url=url)
        assert code == 0, out + err
        assert "from-set *****" in out and "k3y-never-shown" not in out
        shown = await run_json("ca1", url)
        assert (shown["type"], shown["values"]) == ("AutoRun", {"word": "from-set"})
        assert tag_exists(reg, "hello", "ca1")
    finally:
        stop(process)
