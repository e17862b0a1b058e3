"""`check-config` checks what `serve` checks, through the real command, and a config task the
daemon cannot register is shown, not dropped: /healthz names it, `task list` shows its error.
The daemon's INFO log is basewatch's own, without the libraries' chatter."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import stack
import yaml

from tests.e2e.test_cli_errors import REPO, basewatch, error_lines
from tests.e2e.test_daemon import health, start_daemon, stop
from tests.support.git_http import GitHttpServer
from tests.support.git_remotes import GitRemote
from tests.support.log_lines import json_lines
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e
TOKEN = "config-checks-token"
UNSET = ("BW_CHECK_UNSET_API", "BW_CHECK_UNSET_REG", "BW_CHECK_UNSET_HOOK")


def write_config(folder: Path, config: dict) -> None:
    (folder / "basewatch.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def app(folder: Path, name: str, dockerfile: str) -> str:
    (folder / name).mkdir()
    (folder / name / "Dockerfile").write_text(dockerfile)
    return name


def without_unset() -> None:
    for name in UNSET:
        assert name not in os.environ


def test_check_config_reports_every_problem_at_once(tmp_path):
    without_unset()
    write_config(tmp_path, {
        "api_token_env": "BW_CHECK_UNSET_API",
        "registries": [{"host": "127.0.0.1:5999", "username": "ci",
                        "password_env": "BW_CHECK_UNSET_REG"}],
        "tasks": [
            {"name": "good", "context": app(tmp_path, "good", "FROM 127.0.0.1:5999/b:1\n"),
             "image": "127.0.0.1:5999/good:1"},
            {"name": "gone", "context": "apps/gone", "image": "127.0.0.1:5999/gone:1"},
            {"name": "bad", "context": app(tmp_path, "bad", "FROM\n"),
             "image": "127.0.0.1:5999/bad:1", "webhook_secret_env": "BW_CHECK_UNSET_HOOK"},
            {"name": "nofile", "context": app(tmp_path, "nofile", "FROM scratch\n"),
             "file": "Other.Dockerfile", "image": "127.0.0.1:5999/nofile:1"},
            {"name": "remote", "context": "https://git.example.com/org/app.git",
             "image": "127.0.0.1:5999/remote:1"},
        ]})
    result = basewatch(tmp_path, "check-config", "basewatch.yml")
    assert result.returncode == 2
    assert error_lines(result) == [
        "basewatch.yml: api_token_env: the environment variable BW_CHECK_UNSET_API is not set",
        "basewatch.yml: registries[0].password_env (127.0.0.1:5999): the environment variable "
        "BW_CHECK_UNSET_REG is not set",
        "basewatch.yml: tasks[2].webhook_secret_env (task bad): the environment variable "
        "BW_CHECK_UNSET_HOOK is not set",
        f"basewatch.yml: tasks[1] (task gone): the context folder {tmp_path}/apps/gone does "
        "not exist (or is not a folder)",
        "basewatch.yml: tasks[2] (task bad): Dockerfile line 1: FROM must be "
        "'FROM [--platform=...] IMAGE [AS NAME]'",
        "basewatch.yml: tasks[3] (task nofile): no such Dockerfile 'Other.Dockerfile' in the "
        "build context",
    ]
    # A remote context is not fetched unless asked, and the output says so.
    assert result.stdout == ("basewatch.yml: remote contexts not fetched, so not checked "
                             "(tasks remote): --fetch checks them too\n")


def test_check_config_names_the_key_meant_and_passes_a_good_config(tmp_path):
    write_config(tmp_path, {"poll_intervall": "5s", "tasks": [
        {"name": "one", "context": app(tmp_path, "one", "FROM scratch\n"), "image": "r/one:1",
         "build_arg": {"A": "1"}}]})
    assert sorted(error_lines(basewatch(tmp_path, "check-config", "basewatch.yml"))) == [
        "basewatch.yml: poll_intervall: unknown key; did you mean `poll_interval`?",
        "basewatch.yml: tasks[0].build_arg: unknown key; did you mean `build_args`?",
    ]
    write_config(tmp_path, {"poll_interval": "5s", "tasks": [
        {"name": "one", "context": "one", "image": "r/one:1"},
        {"name": "steps", "context": "one", "file": "acr-task.yaml"}]})
    (tmp_path / "one" / "acr-task.yaml").write_text(
        "version: v1.1.0\nsteps:\n  - build: -t r/steps:1 .\n")
    result = basewatch(tmp_path, "check-config", "basewatch.yml")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == "basewatch.yml: valid (2 tasks, 0 registries)\n"


def test_check_config_reads_a_task_file_as_registration_does(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "acr-task.yaml").write_text("version: v1.1.0\nsteps:\n  - nothing: x\n")
    write_config(tmp_path, {"tasks": [{"name": "steps", "context": "one",
                                       "file": "acr-task.yaml"}]})
    [line] = error_lines(basewatch(tmp_path, "check-config", "basewatch.yml"))
    assert line.startswith("basewatch.yml: tasks[0] (task steps): acr-task.yaml"), line


async def test_check_config_fetches_remote_contexts_only_when_asked(tmp_path):
    GitRemote.create(tmp_path / "served" / "good.git")
    bad = GitRemote.create(tmp_path / "served" / "bad.git")
    bad.base = ""  # FROM with no image
    bad.commit()
    async with GitHttpServer(tmp_path / "served") as server:
        write_config(tmp_path, {"tasks": [
            {"name": "good", "context": server.url("good.git"), "image": "r/good:1"},
            {"name": "bad", "context": server.url("bad.git"), "image": "r/bad:1"}]})

        async def check(*flags: str) -> tuple[int, str, str]:
            # Not subprocess.run: the git server answers in this test's event loop.
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "basewatch", "check-config", "basewatch.yml", *flags,
                cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(process.communicate(), 120)
            return process.returncode, out.decode(), err.decode()

        assert await check() == (0, "basewatch.yml: remote contexts not fetched, so not "
                                    "checked (tasks good, bad): --fetch checks them too\n"
                                    "basewatch.yml: valid (2 tasks, 0 registries)\n", "")
        assert not server.requests
        code, out, err = await check("--fetch")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["basewatch: error: basewatch.yml: tasks[1] (task bad): "
                                "Dockerfile line 1: FROM must be "
                                "'FROM [--platform=...] IMAGE [AS NAME]'"]


def test_serve_refuses_every_missing_variable_at_once(tmp_path):
    without_unset()
    write_config(tmp_path, {"state_dir": "state", "listen": f"127.0.0.1:{stack.free_port()}",
                            "api_token_env": "BW_CHECK_UNSET_API",
                            "notifications": {"token_env": "BW_CHECK_UNSET_REG"}})
    env = {**os.environ, "PYTHONPATH": str(REPO), "DOCKER_HOST": "unix:///nowhere.sock"}
    result = subprocess.run([sys.executable, "-m", "basewatch", "serve", "-c", "basewatch.yml"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-2:] == [
        "basewatch: error: api_token_env: the environment variable BW_CHECK_UNSET_API is not set",
        "basewatch: error: notifications.token_env: the environment variable BW_CHECK_UNSET_REG "
        "is not set",
    ]


def test_an_unregistrable_config_task_is_named_by_healthz_and_task_list(tmp_path, docker_host):
    config = {"poll_interval": "1h", "api_token_env": "API_TOKEN", "tasks": [
        {"name": "fine", "context": app(tmp_path, "fine", "FROM scratch\nLABEL a=b\n"),
         "image": "127.0.0.1:5999/fine:1"},
        {"name": "gone", "context": "gone", "image": "127.0.0.1:5999/gone:1"}]}
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    try:
        report = health(url, process)
        assert report["status"] == "degraded", report
        assert report["engine"] == "ok" and report["failing_references"] == []
        assert report["unregistered_tasks"] == {
            "gone": f"the context folder {tmp_path}/gone does not exist (or is not a folder)"}

        env = {"BASEWATCH_URL": url, "BASEWATCH_TOKEN": TOKEN}
        listed = cli(tmp_path, env, "task", "list")
        assert listed.returncode == 0, listed
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["NAME", "SOURCE", "PLATFORM", "IMAGES", "CONTEXT", "ERROR"]
        [gone] = [line for line in lines if line.startswith("gone ")]
        assert gone.endswith(f"the context folder {tmp_path}/gone does not exist (or is not "
                             "a folder)")
        assert [line for line in lines if line.startswith("fine ")]

        # Fixed and reloaded: registered, and /healthz is ok again.
        app(tmp_path, "gone", "FROM scratch\n")
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: health(url, process)["status"] == "ok", 30, "/healthz ok after fix")
        listed = cli(tmp_path, env, "task", "list")
        assert "ERROR" not in listed.stdout and "gone" in listed.stdout

        # Broken and reloaded: its earlier registration stays, listed with the error.
        (tmp_path / "fine" / "Dockerfile").write_text("FROM\n")
        process.send_signal(signal.SIGHUP)
        report = wait_until(lambda: (r := health(url, process))["unregistered_tasks"] and r,
                            30, "/healthz naming the broken task")
        assert report["status"] == "degraded"
        assert report["unregistered_tasks"] == {
            "fine": "Dockerfile line 1: FROM must be 'FROM [--platform=...] IMAGE [AS NAME]'"}
        lines = cli(tmp_path, env, "task", "list").stdout.splitlines()
        [fine] = [line for line in lines if line.startswith("fine ")]
        assert fine.endswith("Dockerfile line 1: FROM must be 'FROM [--platform=...] IMAGE "
                             "[AS NAME]'")
        assert len([line for line in lines if line.startswith("fine ")]) == 1
    finally:
        output = stop(process)
    # INFO: basewatch's own events only, none of the scheduler's "Adding job" chatter.
    assert "task gone not registered: the context folder" in output
    assert "basewatch is watching" in output
    assert "apscheduler" not in output and "Adding job" not in output, output
    assert all(line["logger"].startswith("basewatch")
               for line in json_lines(output) if line["level"] == "info"), output


def cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "basewatch", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("level, libraries_shown", [("debug", False), ("debug:all", True)])
def test_debug_is_basewatch_own_unless_all_is_asked(tmp_path, level, libraries_shown):
    port = stack.free_port()
    write_config(tmp_path, {"state_dir": "state", "listen": f"127.0.0.1:{port}"})
    # To a file, not a pipe nobody reads until the end: every library's debug lines (each
    # statement's, through SQLAlchemy and aiosqlite) fill a pipe before /healthz is asked.
    with open(tmp_path / "daemon.log", "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "basewatch", "serve", "-c", "basewatch.yml", "--log-level",
             level], env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
            cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    try:
        health(f"http://127.0.0.1:{port}", process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    output = (tmp_path / "daemon.log").read_text()
    assert process.returncode == 0 and "Traceback" not in output, output
    lines = json_lines(output)  # a file, not a terminal: JSON lines
    assert any(line["logger"].startswith("basewatch.") and line["level"] in ("debug", "info")
               for line in lines), output
    assert any(line["logger"] == "apscheduler.scheduler" and
               line["event"].startswith("Adding job") for line in lines) == libraries_shown
    assert any(line["logger"] in ("aiosqlite", "asyncio") and line["level"] == "debug"
               for line in lines) == libraries_shown


def test_serve_names_the_key_meant_when_it_refuses_a_config(tmp_path):
    write_config(tmp_path, {"poll_intervall": "5s"})
    result = basewatch(tmp_path, "serve", "--config", "basewatch.yml", timeout=30)
    assert error_lines(result) == [
        "basewatch.yml: poll_intervall: unknown key; did you mean `poll_interval`?"]
