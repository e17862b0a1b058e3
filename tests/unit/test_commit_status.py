"""A report_status task's runs post pending, then their end, to the commit on the GitHub and
GitLab stand-ins, in order, linking to the run's log; a failing post never raises."""
from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta, timezone

import pytest

from basewatch.commit_status import CommitStatuses, describe
from basewatch.models import Run, RunStatus, RunType, SourceCommit, Trigger
from basewatch.netpolicy import HostPolicy
from basewatch.scm.api import ScmApi
from basewatch.scm.hosts import GitHostSettings
from basewatch.tasks import Task
from tests.support.github_api import GitHubApi
from tests.support.gitlab_api import GitLabApi

PUBLIC = "https://bw.example.com"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
OTHER_SHA = "a" * 40
START = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)


class Tasks:
    def __init__(self, *tasks: Task):
        self.tasks = {task.name: task for task in tasks}

    async def get(self, name: str) -> Task | None:
        return self.tasks.get(name)


def run(status: RunStatus = RunStatus.RUNNING, commit: str | None = SHA, task: str = "app",
        **fields) -> Run:
    source = SourceCommit(commit, "main") if commit else None
    return dataclasses.replace(
        Run("ca1", task, Trigger.COMMIT, RunType.AUTO_BUILD, status, "linux/amd64", START),
        source_commit=source, **fields)


@pytest.fixture
async def api():
    async with ScmApi(HostPolicy(("127.0.0.1",), setting="git_hosts"), backoff=0.01,
                      attempts=2) as client:
        yield client


def statuses_for(server, api, provider: str, **task_settings) -> CommitStatuses:
    host = f"127.0.0.1:{server.port}"
    settings = {"report_status": True, "git_access_token_env": "GIT_TOKEN", **task_settings}
    app = Task("app", f"http://{host}/org/repo.git#main", ["reg/app:1"], **settings)
    return CommitStatuses(Tasks(app), api, [GitHostSettings(host=host, provider=provider,
                                                            api_url=server.api_url)],
                          PUBLIC, {"GIT_TOKEN": "good-token"})


@pytest.mark.parametrize("stand_in, provider, states", [
    (GitHubApi, "github", ["pending", "success"]),
    (GitLabApi, "gitlab", ["running", "success"])])
async def test_a_commit_run_posts_pending_then_its_end_with_the_log_link(api, stand_in,
                                                                         provider, states):
    async with stand_in() as server:
        statuses = statuses_for(server, api, provider)
        await statuses.on_started(run())
        await statuses.on_finished(run(RunStatus.SUCCEEDED, started_at=START,
                                           finished_at=START + timedelta(seconds=12)))
        await statuses.settled()
        posted = server.repositories["org/repo"].statuses
    assert [s["state"] if provider == "github" else s["status"] for s in posted] == states
    for status in posted:
        assert status["sha"] == SHA
        assert status.get("context", status.get("name")) == "basewatch/app"
        assert status["target_url"] == f"{PUBLIC}/api/runs/ca1/log"
    assert posted[-1]["description"] == "run ca1 succeeded after 12s"


async def test_another_git_run_posts_once_its_revision_is_known(api):
    async with GitHubApi() as server:
        statuses = statuses_for(server, api, "github")
        timer_run = run(commit=None)
        await statuses.on_started(timer_run)  # its commit is not known yet
        await statuses.on_revision(timer_run, OTHER_SHA)
        await statuses.on_finished(run(RunStatus.FAILED, commit=None, git_revision=OTHER_SHA,
                                       error="the build failed: RUN exit 1"))
        await statuses.settled()
        posted = server.repositories["org/repo"].statuses
    assert [(s["sha"], s["state"]) for s in posted] == [(OTHER_SHA, "pending"),  # running
                                                        (OTHER_SHA, "failure")]
    assert posted[-1]["description"] == "run ca1 failed: the build failed: RUN exit 1"


async def test_tasks_without_report_status_and_quick_builds_post_nothing(api):
    async with GitHubApi() as server:
        statuses = statuses_for(server, api, "github", report_status=False)
        await statuses.on_started(run())
        await statuses.on_finished(run(RunStatus.SUCCEEDED))
        await statuses.on_finished(run(RunStatus.SUCCEEDED, task=""))
        await statuses.settled()
    assert server.received == []


async def test_a_failing_status_endpoint_is_logged_and_never_raises(api, caplog):
    async with GitHubApi() as server:
        statuses = statuses_for(server, api, "github")
        server.fail_next(500, times=10)
        with caplog.at_level(logging.WARNING, logger="basewatch.commit_status"):
            await statuses.on_started(run())
            await statuses.on_finished(run(RunStatus.ERROR, error="no engine"))
            await statuses.settled()
        await statuses.close()
    assert server.repositories["org/repo"].statuses == []
    assert "could not set the commit status basewatch/app" in caplog.text
    assert "good-token" not in caplog.text


def test_the_description_says_how_the_run_went():
    assert describe(run()) == "run ca1 is building"
    assert describe(run(RunStatus.CANCELED, error="canceled by request")) == \
        "run ca1 canceled: canceled by request"
