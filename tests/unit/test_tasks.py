"""The domain Task, and the two edges that map into it: the config file and the API's body."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from basewatch.cli import build_parser
from basewatch.cli_runs import _task_body
from basewatch.config import TaskSettings, load_config, task_fields
from basewatch.errors import InvalidRequestError
from basewatch.oci.platforms import Platform
from basewatch.services import Services, triggers_view
from basewatch.tasks import BaseImageTrigger, CommitTrigger, PullRequestTrigger, Task, Timer
from basewatch.triggers import Triggers
from basewatch.watcher.registration import TaskRegistrar
from tests.support.stores import open_store

AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64")
REG = "reg.example:5000"
# Each platform's bases are its own: TARGETARCH picks the runtime base.
DOCKERFILE = f"FROM {REG}/base-$TARGETARCH:1\nRUN true\n"


def test_a_config_task_maps_into_the_domain_task(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "basewatch.yml").write_text(yaml.safe_dump({"tasks": [{
        "name": "app", "context": "app", "file": "build/Dockerfile",
        "image": f"{REG}/app:latest", "build_args": {"V": 1}, "target": "final",
        "platform": ["linux/amd64", "linux/aarch64"], "push": False, "timeout": "5m",
        "base_image_trigger": {"enabled": False, "type": "all"}}]}))
    [settings] = load_config(tmp_path / "basewatch.yml").tasks
    assert settings.to_task() == Task(
        name="app", context=str(tmp_path / "app"), images=[f"{REG}/app:latest"],
        file="build/Dockerfile", build_args={"V": "1"}, target="final",
        platforms=[AMD64, ARM64], base_image_trigger=BaseImageTrigger(False, "all"),
        push=False, timeout=300.0)


def test_the_defaults_map_too():
    task = TaskSettings(name="app", context="/srv/app", image=[f"{REG}/app:1"]).to_task()
    assert task == Task(name="app", context="/srv/app", images=[f"{REG}/app:1"])
    assert (task.platforms, task.platform_list) == ([AMD64], "linux/amd64")


def test_task_fields_map_back_into_the_same_task():
    task = Task(name="app", context="/srv/app", images=[f"{REG}/app:1"], target="t",
                platforms=[ARM64, AMD64], base_image_trigger=BaseImageTrigger(True, "all"))
    assert task_fields(task)["platform"] == ["linux/arm64", "linux/amd64"]
    assert TaskSettings.model_validate(task_fields(task)).to_task() == task


class Digests:
    async def platform_digest(self, ref, platform):
        return SimpleNamespace(digest=f"sha256:{platform.architecture}", index_digest=None)


@pytest.fixture
async def services(tmp_path: Path):
    store = await open_store(tmp_path / "state" / "basewatch.db")
    registrar = TaskRegistrar(store, Digests(), REG)
    yield Services(store, registrar, SimpleNamespace(log_updates=None, logs_dir=tmp_path / "logs"),
                   Triggers(store.runs, lambda run_id, delay: None), local_contexts_root=tmp_path)
    await store.close()


def app_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "Dockerfile").write_text(DOCKERFILE)
    return folder


@pytest.mark.parametrize("platform", ["linux/amd64,linux/arm64", ["linux/amd64", "linux/arm64"]])
async def test_an_api_body_maps_into_a_task_of_several_platforms(tmp_path, services, platform):
    view = await services.create_task({"name": "app", "context": str(app_folder(tmp_path)),
                                       "image": f"{REG}/app:1", "platform": platform})
    assert view["platform"] == ["linux/amd64", "linux/arm64"]
    task = await services.store.tasks.get("app")
    assert (task.images, task.platforms) == ([f"{REG}/app:1"], [AMD64, ARM64])
    # Each platform analysed on its own, and watched from its own digest.
    assert {(b["reference"], b["platform"], b["digest_at_build"]) for b in view["bases"]} == {
        (f"{REG}/base-amd64:1", "linux/amd64", "sha256:amd64"),
        (f"{REG}/base-arm64:1", "linux/arm64", "sha256:arm64")}
    run = await services.run_task("app", {})
    assert run["platform"] == "linux/amd64,linux/arm64"


async def test_an_api_update_keeps_what_it_does_not_change(tmp_path, services):
    await services.create_task({"name": "app", "context": str(app_folder(tmp_path)),
                                "image": f"{REG}/app:1", "platform": "linux/arm64"})
    view = await services.update_task("app", {"platform": "linux/amd64,linux/arm64"})
    assert (view["image"], view["platform"]) == ([f"{REG}/app:1"], ["linux/amd64", "linux/arm64"])
    assert len(view["bases"]) == 2


@pytest.mark.parametrize("platform, message", [
    ("linux/amd64,linux", "task: platform: platform 'linux' is not of the form os/arch[/variant]"),
    ("linux/amd64 linux/arm64", "is not of the form os/arch[/variant]"),
    ("linux/arm64,linux/aarch64", "task: platform: the platform linux/arm64 is given twice"),
])
async def test_a_malformed_platform_list_is_refused_in_one_line(tmp_path, services, platform,
                                                                message):
    with pytest.raises(InvalidRequestError) as refused:
        await services.create_task({"name": "app", "context": str(app_folder(tmp_path)),
                                    "image": f"{REG}/app:1", "platform": platform})
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert await services.store.tasks.all() == []


GIT_CONTEXT = "https://git.example/org/app.git#main"


def test_the_source_trigger_settings_map_into_the_task_and_back():
    settings = TaskSettings.model_validate({
        "name": "app", "context": GIT_CONTEXT, "image": f"{REG}/app:1",
        "commit_trigger": {"enabled": False, "branches": ["main", "refs/heads/dev", "main"]},
        "pull_request_trigger": {"enabled": True, "allow_forks": True},
        "webhook_secret_env": "HOOK_SECRET", "git_access_token_env": "GIT_TOKEN",
        "report_status": True})
    task = settings.to_task()
    assert task.commit_trigger == CommitTrigger(False, ("main", "dev"))
    assert task.pull_request_trigger == PullRequestTrigger(True, True)
    assert (task.webhook_secret_env, task.git_access_token_env, task.report_status) == \
        ("HOOK_SECRET", "GIT_TOKEN", True)
    assert TaskSettings.model_validate(task_fields(task)).to_task() == task


def test_the_source_triggers_default_to_commits_on_and_pull_requests_off():
    task = TaskSettings(name="app", context=GIT_CONTEXT, image=[f"{REG}/app:1"]).to_task()
    assert task.commit_trigger == CommitTrigger(True, ())
    assert task.pull_request_trigger == PullRequestTrigger(False, False)
    branch = TaskSettings.model_validate({"name": "app", "context": GIT_CONTEXT,
                                          "image": "r/a", "commit_trigger": {"branches": "dev"}})
    assert branch.to_task().commit_trigger.branches == ("dev",)


@pytest.mark.parametrize("change, message", [
    ({"report_status": True}, "report_status needs git_access_token_env"),
    ({"webhook_secret_env": "s3cr3t value"}, "is not the name of an environment variable"),
    ({"git_access_token_env": "1TOKEN"}, "is not the name of an environment variable"),
    ({"commit_trigger": {"branches": ["bad..name"]}}, "is not a valid git branch name"),
    ({"commit_trigger": {"branches": ["-f"]}}, "is not a valid git branch name"),
    ({"commit_trigger": {"enable": True}}, "unknown key"),
    ({"pull_request_trigger": {"allow_forks": "maybe"}}, "pull_request_trigger.allow_forks"),
])
async def test_malformed_source_trigger_settings_are_refused_in_one_line(tmp_path, services,
                                                                         change, message):
    with pytest.raises(InvalidRequestError) as refused:
        await services.create_task({"name": "app", "context": str(app_folder(tmp_path)),
                                    "image": f"{REG}/app:1", **change})
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert await services.store.tasks.all() == []


async def test_an_update_of_one_trigger_setting_keeps_the_others(tmp_path, services):
    await services.create_task({"name": "app", "context": str(app_folder(tmp_path)),
                                "image": f"{REG}/app:1", "build_args": {"A": "1", "B": "2"},
                                "commit_trigger": {"branches": ["main", "dev"]}})
    view = await services.update_task("app", {"commit_trigger": {"enabled": False},
                                              "build_args": {"A": "3"}})
    assert view["commit_trigger"] == {"enabled": False, "branches": ["main", "dev"]}
    assert view["build_args"] == {"A": "3"}  # replaced as a whole: one can be removed


async def test_task_show_lists_every_trigger_with_its_state(tmp_path, services):
    view = await services.create_task({"name": "app", "context": str(app_folder(tmp_path)),
                                       "image": f"{REG}/app:1",
                                       "pull_request_trigger": {"enabled": True}})
    assert [(t["trigger"], t["state"]) for t in view["triggers"]] == [
        ("base_image", "Enabled"),
        ("commit", "Disabled (the context is not a git repository)"),
        ("pull_request", "Disabled (the context is not a git repository)")]


def test_the_trigger_view_of_a_git_task():
    task = replace(TaskSettings(name="app", context=GIT_CONTEXT, image=["r/a"]).to_task(),
                   timers=(Timer("nightly", "0 2 * * *"),))
    assert triggers_view(task) == [
        {"trigger": "base_image", "state": "Enabled", "type": "runtime"},
        {"trigger": "commit", "state": "Enabled", "branches": ["(the context's branch)"]},
        {"trigger": "pull_request", "state": "Disabled",
         "branches": ["(the context's branch)"], "allow_forks": False},
        {"trigger": "timer", "name": "nightly", "state": "Enabled", "schedule": "0 2 * * *"}]


@pytest.mark.parametrize("argv, body", [
    (["--commit-trigger-enabled", "false"], {"commit_trigger": {"enabled": False}}),
    (["--branch", "main", "--branch", "dev"], {"commit_trigger": {"branches": ["main", "dev"]}}),
    (["--pull-request-trigger-enabled", "true", "--pull-request-trigger-allow-forks", "true"],
     {"pull_request_trigger": {"enabled": True, "allow_forks": True}}),
    (["--webhook-secret-env", "HOOK", "--git-access-token-env", "TOKEN",
      "--report-status", "true"],
     {"webhook_secret_env": "HOOK", "git_access_token_env": "TOKEN", "report_status": True}),
    (["--webhook-secret-env", ""], {"webhook_secret_env": None}),
    ([], {}),
])
def test_task_update_flags_name_only_what_changes(argv, body):
    args = build_parser().parse_args(["task", "update", "app", *argv])
    assert _task_body(args) == body
