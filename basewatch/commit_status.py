"""Commit status: each run of a task with `report_status` posts its state to the commit it
builds: running when it starts (pending on GitHub and Gitea, which have no running; a commit
or pull-request run knows its commit then, another run of a git context once its checkout's
revision is known), then success, failure or error, as `basewatch/<task>` with a link to the
run's log.

Posted in the background, in order per run, through `post_status_quietly`: a provider that is
down or refuses is logged and never holds up or fails the run.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Awaitable, Protocol

from basewatch.context_spec import parse_context
from basewatch.errors import BasewatchError
from basewatch.models import Run, RunStatus
from basewatch.redaction import KNOWN
from basewatch.scm.api import ScmApi
from basewatch.scm.hosts import GitHostSettings, ScmError, locate
from basewatch.scm.provider import CommitStatus, StatusState, post_status_quietly
from basewatch.scm.providers import provider_for
from basewatch.scm.webhooks import status_context
from basewatch.tasks import Task

log = logging.getLogger(__name__)

FINAL_STATES: dict[RunStatus, StatusState] = {
    RunStatus.SUCCEEDED: "success", RunStatus.FAILED: "failure", RunStatus.TIMEOUT: "failure",
    RunStatus.ERROR: "error", RunStatus.CANCELED: "canceled"}
# How long the daemon's stop waits for statuses still being posted.
CLOSE_WAIT_SECONDS = 5.0


class TaskLookup(Protocol):
    def get(self, name: str) -> Awaitable[Task | None]: ...


def run_log_url(public_url: str | None, run_id: str) -> str | None:
    return None if public_url is None else f"{public_url.rstrip('/')}/api/runs/{run_id}/log"


def describe(run: Run) -> str:
    """What the status says, in a line."""
    if not run.status.finished:
        return f"run {run.id} is building"
    took = f" after {run.duration_seconds:.0f}s" if run.duration_seconds is not None else ""
    said = f": {run.error}" if run.error else ""
    return f"run {run.id} {run.status.value.lower()}{took}{said}"


class CommitStatuses:
    def __init__(self, tasks: TaskLookup, api: ScmApi,
                 git_hosts: Sequence[GitHostSettings] = (), public_url: str | None = None,
                 environ: Mapping[str, str] = os.environ):
        self.tasks = tasks
        self.api = api
        self.git_hosts = tuple(git_hosts)
        self.public_url = public_url
        self.environ = environ
        self._last: dict[str, asyncio.Task] = {}  # run → its latest post, which the next awaits

    async def on_started(self, run: Run) -> None:
        """The executor's start hook: a commit or pull-request run's commit is known now."""
        if run.source_commit is not None:
            await self._post(run, run.source_commit.commit, "running")

    async def on_revision(self, run: Run, revision: str) -> None:
        """The planner's hook once a checkout's revision is known: another git run's commit."""
        if run.source_commit is None:
            try:
                await self._post(run, revision, "running")
            except Exception:  # called inside the run: a status never fails it
                log.exception("run %s: commit status not posted", run.id)

    async def on_finished(self, run: Run) -> None:
        """The executor's end hook."""
        sha = run.source_commit.commit if run.source_commit is not None else run.git_revision
        state = FINAL_STATES.get(run.status)
        if sha and state is not None:
            await self._post(run, sha, state)
        else:
            self._last.pop(run.id, None)

    async def _post(self, run: Run, sha: str, state: StatusState) -> None:
        if not run.task:
            return  # a quick build has no task to report as
        task = await self.tasks.get(run.task)
        if task is None or not task.report_status or not task.git_access_token_env \
                or parse_context(task.context).kind != "git":
            return
        token = self.environ.get(task.git_access_token_env)
        if not token:
            log.warning("run %s: no commit status: %s is not set in the daemon's environment",
                        run.id, task.git_access_token_env)
            return
        KNOWN.add(token)
        try:
            provider = provider_for(locate(task.context, self.git_hosts), self.api, token,
                                    task.git_access_token_env)
        except ScmError as exc:
            log.warning("run %s: no commit status: %s", run.id, exc)
            return
        status = CommitStatus(state, status_context(task.name), describe(run),
                              run_log_url(self.public_url, run.id))
        previous = self._last.get(run.id)

        async def post() -> None:
            if previous is not None:  # in order: a quick run's success never under its pending
                await asyncio.gather(previous, return_exceptions=True)
            try:
                problem = await post_status_quietly(provider, sha, status)
            except BasewatchError as exc:  # the network policy refusing, say
                problem = f"could not set the commit status {status.context}: {exc}"
            if problem:
                log.warning("run %s: %s", run.id, problem)
            else:
                log.info("run %s: commit status %s %s on %s", run.id, status.context, state,
                         sha[:12])

        posting = asyncio.create_task(post(), name=f"commit status {run.id}")
        self._last[run.id] = posting
        if state != "running":
            posting.add_done_callback(lambda _: self._forget(run.id, posting))

    def _forget(self, run_id: str, posting: asyncio.Task) -> None:
        if self._last.get(run_id) is posting:
            del self._last[run_id]

    async def settled(self) -> None:
        """Wait for the statuses being posted (tests, and the daemon's stop)."""
        await asyncio.gather(*self._last.values(), return_exceptions=True)

    async def close(self) -> None:
        pending = list(self._last.values())
        if pending:
            _, late = await asyncio.wait(pending, timeout=CLOSE_WAIT_SECONDS)
            for posting in late:
                posting.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._last.clear()
