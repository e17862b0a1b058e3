"""`basewatch task ...` through the CLI against a running daemon, the real engine and registry."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.e2e.test_daemon import health, start_daemon, stop, write_app
from tests.e2e.test_graph import TOKEN, cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(tmp_path, registry, base_images, docker_host):
    reg = registry.address
    base_images.build(f"{reg}/base:1", {"/etc/release": "1\n"})
    config = {
        "poll_interval": "1h", "registries": [{"host": reg}], "api_token_env": "API_TOKEN",
        "local_contexts_root": "apps",  # where API tasks may name folders
        "tasks": [{"name": "hello", "image": f"{reg}/hello:latest",
                   "context": write_app(tmp_path, "hello", f"FROM {reg}/base:1\n")}],
    }
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    health(url, process)
    yield url, reg, process, config
    stop(process)


def test_task_lifecycle_and_runs(tmp_path, daemon, base_images):
    url, reg, _, _ = daemon
    context = tmp_path / "apps" / "api-app"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {reg}/base:1\nARG TAG\nRUN echo built $TAG\n")
    created = cli("task", "create", "api-app", "--context", str(context),
                  "-t", f"{reg}/api-app:{{{{.Run.ID}}}}", "-t", f"{reg}/api-app:{{{{.Values.tag}}}}",
                  "--build-arg", "TAG={{.Values.tag}}", url=url)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["bases"][0]["reference"] == f"{reg}/base:1"

    listed = cli("task", "list", url=url)
    assert "api-app  api" in listed.stdout and "hello    config" in listed.stdout

    run = cli("task", "run", "api-app", "--set", "tag=v7", url=url)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Queued a run with ID: ca1\n")
    assert "built v7" in run.stdout, "the log streams as the build happens"
    assert "Run ID: ca1 was successful after" in run.stdout
    assert base_images.read_file(f"{reg}/api-app:v7", "/etc/release") == "1\n"

    shown = json.loads(cli("task", "show-run", "--run-id", "ca1", url=url).stdout)
    assert (shown["status"], shown["trigger"], shown["type"]) == (
        "Succeeded", "Manual", "AutoBuild")
    assert {o["image"] for o in shown["outputs"]} == {f"{reg}/api-app:ca1", f"{reg}/api-app:v7"}
    assert shown["base_digests"][f"{reg}/base:1"].startswith("sha256:")

    runs = cli("task", "list-runs", "--name", "api-app", "--run-status", "Succeeded",
               "--image", f"{reg}/api-app", url=url)
    header, _, row = runs.stdout.splitlines()[:3]
    assert header.split() == ["RUN", "ID", "TASK", "PLATFORM", "STATUS", "TRIGGER", "STARTED",
                              "DURATION", "OUTPUT", "IMAGE", "SOURCE"]
    assert row.split()[:5] == ["ca1", "api-app", "linux/amd64", "Succeeded", "Manual"]
    assert cli("task", "list-runs", "--image", f"{reg}/nothing", url=url).stdout.count("\n") == 2

    logs = cli("task", "logs", "api-app", url=url)
    assert "built v7" in logs.stdout and "Run ID: ca1 was successful" in logs.stdout

    updated = cli("task", "update", "api-app", "--base-image-trigger-type", "all", url=url)
    assert json.loads(updated.stdout)["base_image_trigger"]["type"] == "all"
    assert cli("task", "delete", "api-app", url=url).returncode == 0
    assert "api-app" not in cli("task", "list", url=url).stdout


def test_a_task_of_several_platforms_through_the_cli(tmp_path, daemon):
    url, reg, _, _ = daemon
    context = tmp_path / "apps" / "both"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {reg}/base:1\n")
    created = cli("task", "create", "both", "--context", str(context), "-t", f"{reg}/both:1",
                  "--platform", "linux/amd64,linux/aarch64", url=url)
    assert created.returncode == 0, created.stderr
    task = json.loads(created.stdout)
    assert task["platform"] == ["linux/amd64", "linux/arm64"]
    assert {(b["reference"], b["platform"]) for b in task["bases"]} == {
        (f"{reg}/base:1", "linux/amd64"), (f"{reg}/base:1", "linux/arm64")}
    row = next(line for line in cli("task", "list", url=url).stdout.splitlines()
               if line.startswith("both "))
    assert row.split()[:3] == ["both", "api", "linux/amd64,linux/arm64"]

    refused = cli("task", "create", "bad", "--context", str(context), "-t", f"{reg}/bad:1",
                  "--platform", "linux/amd64,linux", url=url)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "basewatch: error: task: platform: platform 'linux' is not of the form "
        "os/arch[/variant] (HTTP 400)"], \
        refused.stderr


def test_failures_cancel_and_timeout(tmp_path, daemon):
    url, reg, _, _ = daemon
    for name, dockerfile, options in (
            ("broken", f"FROM {reg}/base:1\nRUN echo going wrong && exit 4\n", []),
            ("slow", f"FROM {reg}/base:1\nRUN sleep 60\n", []),
            ("late", f"FROM {reg}/base:1\nRUN sleep 60\n", ["--timeout", "3"])):
        context = tmp_path / "apps" / name
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(dockerfile)
        made = cli("task", "create", name, "--context", str(context), "-t",
                   f"{reg}/{name}:latest", *options, url=url)
        assert made.returncode == 0, made.stderr

    failed = cli("task", "run", "broken", url=url)
    assert failed.returncode == 1
    assert "going wrong" in failed.stdout and "returned a non-zero code: 4" in failed.stdout
    assert "Status: Failed" in failed.stderr and "Traceback" not in failed.stderr

    queued = cli("task", "run", "slow", "--no-wait", url=url)
    run_id = queued.stdout.split()[-1]
    deadline = time.monotonic() + 30
    while json.loads(cli("task", "show-run", "--run-id", run_id, url=url).stdout)["status"] \
            != "Running":
        assert time.monotonic() < deadline, "the slow run never started"
        time.sleep(0.3)
    # `task logs` attaches to the run in progress and ends when the run does.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASEWATCH_")}
    follower = subprocess.Popen([sys.executable, "-m", "basewatch", "task", "logs", "slow"],
                                env={**env, "BASEWATCH_URL": url, "BASEWATCH_TOKEN": TOKEN},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    assert follower.poll() is None, "still following while the run is in progress"
    canceled = cli("task", "cancel-run", "--run-id", run_id, url=url)
    assert canceled.returncode == 0, canceled.stderr
    followed, _ = follower.communicate(timeout=30)
    assert "RUN sleep 60" in followed and f"Run ID: {run_id} was canceled" in followed
    deadline = time.monotonic() + 30
    while (shown := json.loads(cli("task", "show-run", "--run-id", run_id, url=url).stdout)
           )["status"] == "Running":
        assert time.monotonic() < deadline, "the cancel did not stop the run"
        time.sleep(0.3)
    assert shown["status"] == "Canceled" and shown["duration_seconds"] < 30
    again = cli("task", "cancel-run", "--run-id", run_id, url=url)
    assert again.returncode == 2 and "has already finished (Canceled)" in again.stderr

    late = cli("task", "run", "late", url=url)
    assert late.returncode == 1 and "Status: Timeout" in late.stderr
    assert "timeout of 3s" in late.stderr


def test_bad_requests_get_clear_messages(tmp_path, daemon):
    url, *_ = daemon
    cases = [
        (("task", "show", "nope"), "no task named nope"),
        (("task", "show-run", "--run-id", "ca999"), "no run with ID ca999"),
        (("task", "delete", "hello"), "task hello comes from the config file"),
        # A relative folder is resolved on the CLI's side, then checked as any other.
        (("task", "create", "x", "--context", "relative/dir", "-t", "r/x"),
         "/relative/dir is not under the daemon's local_contexts_root"),
        (("task", "create", "y", "--context", f"{tmp_path}/apps/nonexistent", "-t", "r/y"),
         f"the context folder {tmp_path}/apps/nonexistent does not exist (or is not a folder)"),
        (("task", "create", "z", "--context", "/etc", "-t", "r/z"),
         "not under the daemon's local_contexts_root"),
        (("task", "list-runs", "--run-status", "Sleeping"), "status 'Sleeping' is not one of"),
        (("task", "create", "hello", "--context", "/x", "-t", "r/x"), "exists already"),
    ]
    for args, message in cases:
        result = cli(*args, url=url)
        assert result.returncode == 2, (args, result.stdout)
        assert result.stderr.startswith("basewatch: error: ") and message in result.stderr, \
            (args, result.stderr)
        assert "Traceback" not in result.stderr
    wrong = cli("task", "list", url=url, token="wrong")
    assert wrong.returncode == 2 and "(HTTP 401)" in wrong.stderr


def test_sighup_reloads_config_tasks(tmp_path, daemon):
    url, reg, process, config = daemon
    config["tasks"].append({"name": "added", "image": f"{reg}/added:latest",
                            "context": write_app(tmp_path, "added", f"FROM {reg}/base:1\n")})
    config["tasks"] = [t for t in config["tasks"] if t["name"] != "hello"]
    path = tmp_path / "basewatch.yml"
    written = yaml.safe_load(path.read_text())
    written["tasks"] = config["tasks"]
    path.write_text(yaml.safe_dump(written))
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "added" not in (listed := cli("task", "list", url=url).stdout):
        assert time.monotonic() < deadline, "SIGHUP did not reload the tasks"
        time.sleep(0.3)
    assert "hello" not in listed

    path.write_text("tasks: [not: valid")
    process.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert "added" in cli("task", "list", url=url).stdout, "a broken config changes nothing"


def test_source_trigger_settings_through_the_cli(tmp_path, daemon):
    url, reg, _, _ = daemon
    context = tmp_path / "apps" / "triggered"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {reg}/base:1\n")
    created = cli("task", "create", "triggered", "--context", str(context),
                  "-t", f"{reg}/triggered:{{{{.Run.Commit}}}}", "--branch", "main",
                  "--branch", "release", "--pull-request-trigger-enabled", "true",
                  "--webhook-secret-env", "HOOK_SECRET", url=url)
    assert created.returncode == 0, created.stderr
    task = json.loads(created.stdout)
    assert task["commit_trigger"] == {"enabled": True, "branches": ["main", "release"]}
    assert task["pull_request_trigger"] == {"enabled": True, "allow_forks": False}
    assert task["webhook_secret_env"] == "HOOK_SECRET"

    updated = json.loads(cli("task", "update", "triggered", "--commit-trigger-enabled",
                             "false", "--git-access-token-env", "GIT_TOKEN",
                             "--report-status", "true", url=url).stdout)
    assert updated["commit_trigger"] == {"enabled": False, "branches": ["main", "release"]}
    assert (updated["git_access_token_env"], updated["report_status"]) == ("GIT_TOKEN", True)

    shown = json.loads(cli("task", "show", "triggered", url=url).stdout)
    assert [t["trigger"] for t in shown["triggers"]] == ["base_image", "commit",
                                                         "pull_request"]
    assert shown["triggers"][0]["state"] == "Enabled"

    refused = cli("task", "update", "triggered", "--git-access-token-env", "", url=url)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "basewatch: error: task: report_status needs git_access_token_env: the commit status "
        "is posted through the provider's API with that token (HTTP 400)"]
    refused = cli("task", "update", "triggered", "--branch", "..", url=url)
    assert refused.returncode != 0 and "'..' is not a valid git branch name" in refused.stderr
