"""Commit and pull-request events matched to tasks, on the real SQLite store: by repository
(any URL form) and branch, each trigger's setting honoured, one run per (task, commit) however
often and however concurrently an event comes, and a one-line reason when nothing is queued.
Events carry the fields of the providers' published examples (tests/fixtures/webhooks)."""
from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from basewatch.config import TaskSettings
from basewatch.models import RunType, SourceCommit, Trigger
from basewatch.triggers import Triggers
from basewatch.triggers.commits import CommitTriggers
from basewatch.triggers.source_events import SourceEvent

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"
REPO = "https://github.com/Codertocat/Hello-World.git"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def github_push(name: str = "github-push.json") -> SourceEvent:
    """The fields a receiver reads from GitHub's push example."""
    body = fixture(name)
    repository = body["repository"]
    ignored = None
    if body["deleted"] or not body["ref"].startswith("refs/heads/"):
        ignored = f"{body['ref']} was deleted" if body["deleted"] else "a tag push"
    return SourceEvent(
        "github", "push", (repository["clone_url"], repository["ssh_url"],
                           repository["html_url"], repository["git_url"]),
        branch=body["ref"].removeprefix("refs/heads/"), commit=body["after"],
        default_branch=repository["default_branch"], delivery="d-1", ignored=ignored)


def github_pull_request(from_fork: bool = False) -> SourceEvent:
    body = fixture("github-pull_request-opened.json")
    request, repository = body["pull_request"], body["repository"]
    return SourceEvent(
        "github", "pull_request", (repository["clone_url"], repository["ssh_url"]),
        branch=request["head"]["ref"], commit=request["head"]["sha"],
        target_branch=request["base"]["ref"], pull_request=body["number"],
        fetch_ref=f"refs/pull/{body['number']}/head", from_fork=from_fork,
        default_branch=repository["default_branch"])


PUSH = github_push()
SHA = PUSH.commit


@pytest.fixture
def submitted() -> list[str]:
    return []


@pytest.fixture
def commits(store, submitted) -> CommitTriggers:
    return CommitTriggers(store.tasks, Triggers(store.runs,
                                                lambda run_id, delay: submitted.append(run_id)))


async def add(store, name: str, context: str = f"{REPO}#master", **settings) -> None:
    task = TaskSettings.model_validate({"name": name, "context": context,
                                        "image": f"reg:5000/{name}:{{{{.Run.Commit}}}}",
                                        **settings}).to_task()
    await store.tasks.upsert(task, "api")


async def test_a_push_to_a_tasks_branch_queues_one_run_of_that_commit(store, commits,
                                                                      submitted):
    await add(store, "app")
    outcome = await commits.on_event(PUSH)
    assert outcome.reason == "" and list(outcome.run_ids) == submitted
    run = await store.runs.get(outcome.run_ids[0])
    assert (run.task, run.trigger, run.run_type, run.platform) == (
        "app", Trigger.COMMIT, RunType.AUTO_BUILD, "linux/amd64")
    assert run.source_commit == SourceCommit(SHA, "master")
    assert run.reason == f"commit {SHA[:12]} pushed to master, from github"


async def test_the_same_delivery_twice_or_the_same_commit_polled_queues_one_run(store, commits,
                                                                               submitted):
    await add(store, "app")
    (run_id,) = (await commits.on_event(PUSH)).run_ids
    again = await commits.on_event(PUSH)
    assert again.run_ids == ()
    assert again.reason == f"commit {SHA} has a run of app already"
    polled = SourceEvent("poll", "push", ("git@github.com:Codertocat/Hello-World.git",),
                         branch="master", commit=SHA)
    assert (await commits.on_event(polled)).run_ids == ()
    assert submitted == [run_id]


async def test_concurrent_deliveries_of_one_commit_queue_one_run(store, commits, submitted):
    await add(store, "app")
    outcomes = await asyncio.gather(*(commits.on_event(PUSH) for _ in range(8)))
    assert sum(len(o.run_ids) for o in outcomes) == 1 and len(submitted) == 1


async def test_every_task_on_the_repository_and_branch_gets_a_run(store, commits):
    await add(store, "app")
    await add(store, "web", "git@github.com:codertocat/hello-world#master:web")
    await add(store, "other", "https://github.com/Codertocat/Other.git#master")
    outcome = await commits.on_event(PUSH)
    assert sorted([(await store.runs.get(i)).task for i in outcome.run_ids]) == ["app", "web"]


@pytest.mark.parametrize("event, reason", [
    (github_push("github-push-tag-deleted.json"), "refs/tags/simple-tag was deleted"),
    (SourceEvent("github", "ping", (REPO,)), "a ping queues nothing"),
    (replace(PUSH, commit="6113728"), "the event is refused: '6113728' is not a full commit SHA"),
    (replace(PUSH, commit=None), "the event is refused: it names no commit"),
    (replace(PUSH, branch=None), "the event is refused: a push names no branch"),
    (replace(PUSH, branch="-f"), "the event is refused: '-f' is not a valid git branch name"),
    (replace(PUSH, repository_urls=()), "the event names no repository URL"),
    (replace(PUSH, repository_urls=("https://github.com/Codertocat/Elsewhere.git",)),
     "no task builds https://github.com/Codertocat/Elsewhere.git"),
    (replace(PUSH, branch="develop"), f"no task builds {REPO} on branch develop"),
])
async def test_events_no_task_wants_queue_nothing_and_say_why(store, commits, submitted,
                                                              event, reason):
    await add(store, "app")
    outcome = await commits.on_event(event)
    assert (outcome.run_ids, outcome.reason) == ((), reason)
    assert submitted == [] and await store.runs.queued() == []


async def test_a_task_whose_commit_trigger_is_off_is_not_run(store, commits):
    await add(store, "app", commit_trigger={"enabled": False})
    outcome = await commits.on_event(PUSH)
    assert outcome.reason == f"the commit trigger is off for task app ({REPO} on branch master)"


async def test_a_task_that_is_not_a_git_context_never_matches(store, commits, tmp_path):
    await add(store, "folder", str(tmp_path))
    await add(store, "tarball", "https://github.com/Codertocat/Hello-World/archive.tar.gz")
    assert (await commits.on_event(PUSH)).reason == f"no task builds {REPO}"


@pytest.mark.parametrize("context, branches, default, runs", [
    (REPO, [], "master", 1),                   # no branch anywhere: the default branch
    (REPO, [], None, 0),                       # ... which the event does not say
    (f"{REPO}#master", [], None, 1),           # the context's own branch
    (f"{REPO}#{'a' * 40}", [], "master", 1),   # a commit is no branch: the default
    (f"{REPO}#develop", [], "master", 0),
    (f"{REPO}#develop", ["develop", "master"], None, 1),  # the branches named win
    (REPO, ["main"], "master", 0),
])
async def test_the_branches_a_task_follows(store, commits, context, branches, default, runs):
    await add(store, "app", context, commit_trigger={"branches": branches})
    outcome = await commits.on_event(replace(PUSH, default_branch=default))
    assert len(outcome.run_ids) == runs


async def test_only_the_tasks_the_delivery_authenticates_are_asked(store, commits):
    await add(store, "app")
    await add(store, "web")
    outcome = await commits.on_event(PUSH, tasks={"web"})
    assert [(await store.runs.get(i)).task for i in outcome.run_ids] == ["web"]
    assert (await commits.on_event(replace(PUSH, commit="c" * 40), tasks=())).reason == \
        f"no task that the delivery's secret authenticates builds {REPO}"


async def test_a_pull_request_needs_its_trigger_on(store, commits):
    await add(store, "app")
    outcome = await commits.on_event(github_pull_request())
    assert outcome.reason == ("the pull-request trigger is off for task app "
                              f"({REPO} on branch master)")


async def test_a_pull_request_against_a_tasks_branch_builds_its_head(store, commits):
    await add(store, "app", pull_request_trigger={"enabled": True})
    event = github_pull_request()
    (run_id,) = (await commits.on_event(event)).run_ids
    run = await store.runs.get(run_id)
    assert run.trigger is Trigger.PULL_REQUEST
    assert run.source_commit == SourceCommit(event.commit, "changes", 2, "master",
                                             "refs/pull/2/head")
    assert run.reason == f"pull request #2 (changes into master) at {event.commit[:12]}, " \
                         "from github"
    assert (await commits.on_event(event)).reason == \
        f"pull request #2 at {event.commit} has a run of app already"
    # The head moves on (synchronize): a run of the new head.
    assert len((await commits.on_event(replace(event, commit="d" * 40))).run_ids) == 1
    # The same commit pushed is another trigger's run.
    assert len((await commits.on_event(replace(PUSH, commit=event.commit))).run_ids) == 1


async def test_a_pull_request_against_another_branch_is_not_built(store, commits):
    await add(store, "app", pull_request_trigger={"enabled": True},
              commit_trigger={"branches": ["release"]})
    assert (await commits.on_event(github_pull_request())).reason == \
        f"no task builds {REPO} on branch master"


async def test_a_pull_request_from_a_fork_needs_allow_forks(store, commits):
    await add(store, "app", pull_request_trigger={"enabled": True})
    await add(store, "open", pull_request_trigger={"enabled": True, "allow_forks": True})
    fork = github_pull_request(from_fork=True)
    (run_id,) = (await commits.on_event(fork)).run_ids
    assert (await store.runs.get(run_id)).task == "open"
    await store.tasks.delete("open")
    assert (await commits.on_event(replace(fork, commit="e" * 40))).reason == (
        "pull request #2 comes from a fork, and forks are not allowed for task app "
        "(pull_request_trigger.allow_forks)")


async def test_gitlab_and_gitea_events_match_by_any_of_their_urls(store, commits):
    gitlab = fixture("gitlab-push-hook.json")
    await add(store, "mike", "ssh://git@example.com/mike/diaspora.git")
    project = gitlab["project"]
    event = SourceEvent("gitlab", "push", (project["git_http_url"], project["git_ssh_url"],
                                           project["web_url"]),
                        branch=gitlab["ref"], commit=gitlab["after"],
                        default_branch=project["default_branch"])
    assert len((await commits.on_event(event)).run_ids) == 1

    gitea = fixture("gitea-push.json")
    await add(store, "hooks", "http://localhost:3000/gitea/webhooks#develop")
    repository = gitea["repository"]
    event = SourceEvent("gitea", "push", (repository["ssh_url"], repository["clone_url"]),
                        branch=gitea["ref"], commit=gitea["after"])
    assert len((await commits.on_event(event)).run_ids) == 1

    merge = fixture("gitlab-merge-request-hook.json")
    request = merge["object_attributes"]
    await add(store, "diaspora-mr", merge["project"]["git_ssh_url"],
              pull_request_trigger={"enabled": True})
    event = SourceEvent("gitlab", "pull_request", (merge["project"]["git_http_url"],),
                        branch=request["source_branch"], commit=request["last_commit"]["id"],
                        target_branch=request["target_branch"], pull_request=request["iid"],
                        fetch_ref=f"refs/merge-requests/{request['iid']}/head",
                        default_branch=merge["project"]["default_branch"])
    (run_id,) = (await commits.on_event(event)).run_ids
    assert (await store.runs.get(run_id)).source_commit.fetch_ref == \
        "refs/merge-requests/1/head"
