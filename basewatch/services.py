"""What the API (and through it the CLI) can ask of the daemon: tasks, runs, quick builds.

Both doors call these; neither holds logic of its own. Inputs arrive validated (pydantic at the
edge); failures are domain errors with a message a person can act on.
"""
from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Mapping

from pydantic import ValidationError

from basewatch.builder.contexts.checkout import check_api_folder, dockerfile_in
from basewatch.context_spec import (ContextError, context_host, display_url,
                                    parse_context, url_has_credentials,
                                    without_credentials)
from basewatch.builder.quick_runs import QUICK_TASK_NAME, QuickBuildSpec
from basewatch.builder.run_log import log_path
from basewatch.builder.run_log_reader import LogSource, RunLogReader
from basewatch.builder.run_secrets import RunSecrets
from basewatch.builder.executor import RunExecutor
from basewatch.config import (CREDENTIALS_IN_URL, MAX_TIMERS_PER_TASK, TaskSettings,
                              TimerSettings, format_validation_error, task_fields, timer_fields)
from basewatch.errors import (ConflictError, InvalidRequestError, NotFoundError, StartingError,
                              TaskFileError, TooManyRunsError)
from basewatch.graph_view import build_graph_view
from basewatch.models import Run, RunRequest, RunStatus, StepRecord
from basewatch.netpolicy import AddressRefused, HostPolicy
from basewatch.oci.reference import is_registry_host
from basewatch.registration_progress import RegistrationProgress
from basewatch.store import Store
from basewatch.taskfile import load_values_file, merge_values
from basewatch.task_webhooks import TaskWebhooks
from basewatch.tasks import Task, Timer
from basewatch.triggers import Triggers
from basewatch.triggers.manual import quick_build, task_run
from basewatch.triggers.timers import (find_timer, next_fire, utc_now, with_timer,
                                       with_timer_changed, without_timer)
from basewatch.watcher.registration import TaskRegistrar


# Bounds on what a request may hold in memory for a run.
MAX_SECRETS = 100
MAX_SECRET_CHARS = 16 * 1024
MAX_VALUES_FILE_CHARS = 1024 * 1024
SECRET_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def run_secrets(given: object) -> dict[str, str]:
    """A request's `secrets` (`--set-secret`): NAME: text, within bounds. Messages never
    quote a value."""
    if given is None:
        return {}
    if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
        raise InvalidRequestError("secrets must be an object of NAME: text")
    if len(given) > MAX_SECRETS:
        raise InvalidRequestError(f"at most {MAX_SECRETS} secrets a run")
    for name, value in given.items():
        if not SECRET_NAME.fullmatch(name):
            raise InvalidRequestError(f"secret {name[:100]!r}: a name is letters, digits, "
                                      "'_', '.' and '-'")
        if len(value) > MAX_SECRET_CHARS:
            raise InvalidRequestError(f"secret {name}: longer than {MAX_SECRET_CHARS} "
                                      "characters")
    return dict(given)


def run_values(given: object, values_file: object = None) -> dict[str, object]:
    """A run's values: a values file's (YAML text), each of `given` (`--set`) over them."""
    if not isinstance(given, dict):
        raise InvalidRequestError("values must be an object of NAME: VALUE")
    from_file: dict = {}
    if values_file is not None:
        if not isinstance(values_file, str) or len(values_file) > MAX_VALUES_FILE_CHARS:
            raise InvalidRequestError("values_file must be the values file's YAML text, up to "
                                      f"{MAX_VALUES_FILE_CHARS // 1024} KiB")
        try:
            from_file = load_values_file(values_file)
        except TaskFileError as exc:
            raise InvalidRequestError(str(exc)) from None
    return merge_values(from_file, given)


def validated(model, data: object, what: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(format_validation_error(what, exc, model).replace("\n", "; ")) \
            from None


def run_view(run: Run) -> dict:
    return {
        "id": run.id, "task": run.task or None, "type": run.run_type.value,
        "trigger": run.trigger.value, "status": run.status.value, "platform": run.platform,
        "reason": run.reason, "queued_at": _stamp(run.queued_at),
        "started_at": _stamp(run.started_at), "finished_at": _stamp(run.finished_at),
        "duration_seconds": run.duration_seconds, "base_digests": run.base_digests,
        "outputs": [{"image": o.image, "digest": o.digest} for o in run.outputs],
        "git_revision": run.git_revision, "error": run.error, "retry_of": run.retry_of,
        "registry": run.registry, "engine": run.engine, "daemon": run.daemon,
        "archived": run.archived, "archive_ref": run.archive_ref, "values": run.values,
        "base_change": None if run.base_change is None else {
            "reference": run.base_change.reference, "platform": run.base_change.platform,
            "digest": run.base_change.digest},
        "source_commit": None if run.source_commit is None else {
            "commit": run.source_commit.commit, "branch": run.source_commit.branch,
            "pull_request": run.source_commit.pull_request,
            "target_branch": run.source_commit.target_branch,
            "fetch_ref": run.source_commit.fetch_ref},
    }


def step_view(step: StepRecord) -> dict:
    return {"id": step.id, "kind": step.kind, "action": step.action, "status": step.status,
            "started_after_seconds": step.started_after, "duration_seconds": step.seconds,
            "attempts": step.attempts, "exit_code": step.exit_code, "error": step.error}


def _stamp(moment) -> str | None:
    return moment.isoformat() if moment else None


def task_view(task: Task, source: str | None = None) -> dict:
    view = task_fields(task)
    view["context"] = without_credentials(task.context)  # a task stored by an older version
    if source is not None:
        view["source"] = source
    return view


def timer_view(timer: Timer) -> dict:
    """A timer as the API shows it: its settings and when it fires next (UTC)."""
    upcoming = next_fire(timer, utc_now())
    return {**timer_fields(timer), "next_fire": _stamp(upcoming)}


def triggers_view(task: Task) -> list[dict]:
    """Every trigger of a task and its state, as `task show` lists them: a source trigger
    of a context that is not a git repository can never fire, and says so."""
    git = parse_context(task.context).kind == "git"

    def state(enabled: bool, needs_git: bool = False) -> str:
        if needs_git and not git:
            return "Disabled (the context is not a git repository)"
        return "Enabled" if enabled else "Disabled"

    commits, pulls = task.commit_trigger, task.pull_request_trigger
    branches = list(commits.branches) or ["(the context's branch)"]
    found = [
        {"trigger": "base_image", "state": state(task.base_image_trigger.enabled),
         "type": task.base_image_trigger.type},
        {"trigger": "commit", "state": state(commits.enabled, True), "branches": branches},
        {"trigger": "pull_request", "state": state(pulls.enabled, True), "branches": branches,
         "allow_forks": pulls.allow_forks},
    ]
    found += [{"trigger": "timer", "name": timer.name, "state": state(timer.enabled),
               "schedule": timer.schedule} for timer in task.timers]
    return found


# Settings of which an update changes only the keys it gives: `{"commit_trigger": {"enabled":
# false}}` keeps the branches. Build args are replaced as a whole, so one can be removed.
_MERGED_SETTINGS = ("base_image_trigger", "commit_trigger", "pull_request_trigger")


def _merged(fields: dict, changes: dict) -> dict:
    merged = dict(fields)
    for key, value in changes.items():
        if key in _MERGED_SETTINGS and isinstance(value, dict) and isinstance(fields.get(key),
                                                                               dict):
            value = {**fields[key], **value}
        merged[key] = value
    return merged


class Services:
    def __init__(self, store: Store, registrar: TaskRegistrar, executor: RunExecutor,
                 triggers: Triggers, archive=None,
                 allow_file_contexts: bool = False,
                 allowed_context_hosts: list[str] | None = None,
                 local_contexts_root: Path | None = None,
                 max_queued_runs: int | None = None,
                 webhooks: TaskWebhooks | None = None,
                 secrets: RunSecrets | None = None,
                 unregistered: Mapping[str, tuple[Task, str]] | None = None,
                 registration: RegistrationProgress | None = None,
                 daemon_id: str | None = None,
                 log_reader: RunLogReader | None = None):
        # Runs' logs: this daemon's files, and with a shared database the copies there.
        self.logs = log_reader if log_reader is not None else RunLogReader(executor.logs_dir)
        self.max_queued_runs = max_queued_runs
        # With several daemons on one database: this one, which a run whose upload or
        # secrets it holds must run on (None: one daemon, any run goes anywhere).
        self.daemon_id = daemon_id
        # How far the config's tasks are registered as the daemon starts.
        self.registration = registration
        # Config tasks that could not be registered (name -> task, why): listed with the error.
        self.unregistered = unregistered if unregistered is not None else {}
        self.webhooks = webhooks  # registers and removes the tasks' webhooks on their hosts
        self.archive = archive  # a LogArchive when log_archive is configured
        self.local_contexts_root = local_contexts_root
        self.allow_file_contexts = allow_file_contexts
        self.context_hosts = HostPolicy.for_contexts(allowed_context_hosts)
        self.store = store
        self.registrar = registrar
        self.executor = executor
        self.log_updates = executor.log_updates
        self.triggers = triggers
        # The runs' --set-secret values, in memory: the planner's, which reads them.
        self.secrets = secrets if secrets is not None else RunSecrets()

    async def graph_view(self) -> dict:
        return build_graph_view(
            await self.store.graph.watched(), await self.store.graph.dependencies(),
            await self.registrar.published())

    # ------------------------------------------------------------------ tasks

    async def list_tasks(self) -> list[dict]:
        """The stored tasks, and the config's that could not be registered, each of those
        with its `error` (one kept from an earlier registration is still stored)."""
        views = []
        for task, source in await self.store.tasks.with_sources():
            view = task_view(task, source)
            if source == "config" and task.name in self.unregistered:
                view["error"] = self.unregistered[task.name][1]
            views.append(view)
        listed = {view["name"] for view in views}
        for name, (task, error) in self.unregistered.items():
            if name not in listed:
                views.append({**task_view(task, "config"), "error": error})
        return views

    async def task_summaries(self) -> list[dict]:
        """Each task with its triggers and its last run, as the dashboard lists them."""
        summaries = []
        for task, source in await self.store.tasks.with_sources():
            last = await self.store.runs.list(task=task.name, top=1)
            summaries.append({
                "name": task.name, "source": source, "context": without_credentials(task.context),
                "images": list(task.images), "platforms": [str(p) for p in task.platforms],
                "triggers": triggers_view(task), "last_run": run_view(last[0]) if last else None,
                "error": self.unregistered[task.name][1]
                if source == "config" and task.name in self.unregistered else None})
        listed = {summary["name"] for summary in summaries}
        summaries += [{"name": name, "source": "config",
                       "context": without_credentials(task.context), "images": list(task.images),
                       "platforms": [str(p) for p in task.platforms],
                       "triggers": triggers_view(task), "last_run": None, "error": error}
                      for name, (task, error) in self.unregistered.items() if name not in listed]
        return summaries

    async def get_task(self, name: str) -> dict:
        task, source = await self._task(name)
        view = task_view(task, source)
        view["timers"] = [timer_view(timer) for timer in task.timers]
        view["triggers"] = triggers_view(task)
        kept = await self.store.webhooks.get(name)
        if kept is not None and kept.hook_id is not None:  # never the secret: `task webhook`
            view["webhook"] = {"registered": True, "provider": kept.provider,
                               "hook_id": kept.hook_id}
        view["bases"] = [{"reference": d.base, "kind": d.kind.value, "platform": d.platform,
                          "digest_at_build": d.digest_at_build}
                         for d in await self.store.graph.dependencies(name)]
        return view

    async def create_task(self, body: dict) -> dict:
        task = validated(TaskSettings, body, "task").to_task()
        self._check_reached(task.name)
        if await self.store.tasks.get(task.name) is not None:
            raise ConflictError(f"task {task.name} exists already: update it, or delete it first")
        await self._register(task)
        return await self.get_task(task.name)

    async def task_webhook(self, name: str) -> dict:
        """What to enter in the provider's settings for the task's webhook, by hand."""
        task, _ = await self._task(name)
        if self.webhooks is None:
            raise ConflictError("webhooks are not available on this daemon")
        return await self.webhooks.instructions(task)

    async def update_task(self, name: str, changes: dict) -> dict:
        task, source = await self._task(name)
        if source == "config":
            raise ConflictError(f"task {name} comes from the config file: change it there and "
                                "send the daemon SIGHUP")
        if "name" in changes and changes["name"] != name:
            raise InvalidRequestError("a task cannot be renamed: create a new one")
        updated = validated(TaskSettings, _merged(task_fields(task), changes), "task").to_task()
        await self._register(updated, task)
        return await self.get_task(name)

    async def delete_task(self, name: str) -> None:
        found = await self.store.tasks.get_with_source(name)
        self._check_reached(name, found is not None)
        if found is not None and found[1] == "config":
            raise ConflictError(f"task {name} comes from the config file: remove it there and "
                                "send the daemon SIGHUP")
        # Not found may still be stored: a definition an older version kept, refused now.
        if not await self.registrar.unregister(name):
            raise NotFoundError(f"no task named {name}: `basewatch task list` shows them")
        if found is not None and self.webhooks is not None:
            await self.webhooks.removed(found[0])

    async def _register(self, task: Task, previous: Task | None = None) -> None:
        if task.local_context:
            try:
                await asyncio.to_thread(check_api_folder, task.context, self.local_contexts_root)
            except ContextError as exc:
                raise InvalidRequestError(f"task.context: {exc}") from None
        else:
            self._check_remote_context(task.context)
        if self.webhooks is None:
            await self.registrar.register(task, "api")
            return
        # The hook first, so a refused token stores nothing; removed again if the task is not
        # stored (a bad Dockerfile).
        async with self.webhooks.kept_for(task, previous):
            await self.registrar.register(task, "api")

    def _check_reached(self, name: str, found: bool = False) -> None:
        """A config task the start's registration has not reached yet is neither missing nor
        free to take: asked again in a moment, it is there (503, Retry-After). While the
        config's tasks are still being read, only a task `found` stored is known not to be."""
        progress = self.registration
        if progress is not None and progress.not_reached(name) and \
                (progress.listed or not found):
            raise StartingError(
                f"task {name} is in the config and not registered yet: the daemon is starting "
                f"({progress.registered + progress.failed} of {progress.total} config tasks "
                "done); try again in a moment")

    async def _task(self, name: str) -> tuple[Task, str]:
        found = await self.store.tasks.get_with_source(name)
        self._check_reached(name, found is not None)
        if found is None:
            raise NotFoundError(f"no task named {name}: `basewatch task list` shows them")
        return found

    # ------------------------------------------------------------------ timers

    async def list_timers(self, name: str) -> list[dict]:
        task, _ = await self._task(name)
        return [timer_view(timer) for timer in task.timers]

    async def add_timer(self, name: str, body: dict) -> dict:
        timer = _timer(validated(TimerSettings, body, "timer"))

        def add(task: Task, source: str) -> Task:
            _refuse_config_timers(task, source)
            if len(task.timers) >= MAX_TIMERS_PER_TASK:
                raise InvalidRequestError(f"task {name} has {MAX_TIMERS_PER_TASK} timers, the "
                                          "most a task takes: remove one first")
            return with_timer(task, timer)

        self._check_reached(name)
        await self.registrar.change_triggers(name, add)
        return timer_view(timer)

    async def update_timer(self, name: str, timer_name: str, changes: dict) -> dict:
        if changes.get("name", timer_name) != timer_name:
            raise InvalidRequestError("a timer cannot be renamed: add one by the new name and "
                                      "remove this one")

        def update(task: Task, source: str) -> Task:
            _refuse_config_timers(task, source)
            current = timer_fields(find_timer(task, timer_name))
            return with_timer_changed(task, _timer(validated(TimerSettings,
                                                             {**current, **changes}, "timer")))

        self._check_reached(name)
        task = await self.registrar.change_triggers(name, update)
        return timer_view(find_timer(task, timer_name))

    async def remove_timer(self, name: str, timer_name: str) -> None:
        def remove(task: Task, source: str) -> Task:
            _refuse_config_timers(task, source)
            return without_timer(task, timer_name)

        self._check_reached(name)
        await self.registrar.change_triggers(name, remove)

    # ------------------------------------------------------------------ runs

    async def check_queue_room(self) -> None:
        """Manual runs and quick builds are refused while max_queued_runs are queued."""
        if self.max_queued_runs is not None and \
                await self.store.runs.count_queued() >= self.max_queued_runs:
            raise TooManyRunsError(f"{self.max_queued_runs} runs are queued already, the "
                                   "daemon's max_queued_runs: wait for some to finish or "
                                   "cancel some")

    async def run_task(self, name: str, values: dict[str, object],
                       values_file: str | None = None, secrets: object = None,
                       registry: object = None) -> dict:
        """A run of a task now: its values (`--values` file's, `--set`'s over them) and its
        own registry (`--registry`) go with the run; its secrets (a task file's
        `--set-secret`) are held in memory only."""
        if registry is not None and (not isinstance(registry, str)
                                     or not is_registry_host(registry)):
            raise InvalidRequestError("registry must be a registry host as image references "
                                      "write it (host[:port])")
        task, _ = await self._task(name)
        secrets = run_secrets(secrets)
        if secrets and not task.runs_task_file:
            raise InvalidRequestError(f"task {name} builds a Dockerfile: secrets are for task "
                                      "files ({{.Secrets.NAME}})")
        values = run_values(values, values_file)
        await self.check_queue_room()
        (run_id,) = await self.triggers.enqueue([self._held_here(task_run(
            name, task.platform_list, values, task.run_type, tuple(secrets), registry),
            bool(secrets))])
        # Before anything else can run: the executor plans it only once this has returned.
        self.secrets.hold(run_id, secrets)
        return run_view(await self._run(run_id))

    async def quick_build(self, body: dict, uploaded: Path | None = None) -> dict:
        """A quick run of `body` (a QuickBuildSpec), on an uploaded context or a context URL.
        An upload whose request is refused is removed at once."""
        try:
            return await self._quick_build(body, uploaded)
        except BaseException:
            if uploaded is not None:
                self.executor.quick_runs.discard(uploaded)
            raise

    async def _quick_build(self, body: dict, uploaded: Path | None) -> dict:
        if "context_path" in body:
            raise InvalidRequestError("context_path is not accepted: upload the context, or "
                                      "give context_url")
        body = dict(body)
        # Never part of the spec, which is stored with the run.
        secrets = run_secrets(body.pop("secrets", None))
        values = run_values(body.pop("values", None) or {}, body.pop("values_file", None))
        spec = validated(QuickBuildSpec, body, "build")
        if spec.task_file is not None:
            return await self._quick_run(spec, uploaded, values, secrets)
        if secrets or values:
            raise InvalidRequestError("values and secrets are for task files: a quick build "
                                      "takes build arguments")
        if uploaded is not None:
            # refused now, rather than as a failed run
            await asyncio.to_thread(dockerfile_in, uploaded, spec.file)
            spec = spec.model_copy(update={"context_path": str(uploaded)})
        if (spec.context_path is None) == (spec.context_url is None):
            raise InvalidRequestError("give the context as an upload or as a URL, not both")
        if spec.context_url is not None:
            self._check_context_url(spec.context_url)
        if spec.push and not spec.image:
            raise InvalidRequestError("give at least one image (-t) to push, or --no-push")
        await self.check_queue_room()
        (run_id,) = await self.triggers.enqueue([self._held_here(
            quick_build(spec.platform, spec.model_dump_json()), uploaded is not None)])
        return run_view(await self._run(run_id))

    async def _quick_run(self, spec: QuickBuildSpec, uploaded: Path | None,
                         values: dict[str, object], secrets: dict[str, str]) -> dict:
        """A task file's quick run (`basewatch run`): the file came with the request; the
        context is an upload (an empty one for /dev/null) or a URL."""
        if uploaded is not None:
            spec = spec.model_copy(update={"context_path": str(uploaded)})
        if (spec.context_path is None) == (spec.context_url is None):
            raise InvalidRequestError("give the context as an upload or as a URL, not both")
        if spec.context_url is not None:
            self._check_context_url(spec.context_url)
        if spec.image:
            raise InvalidRequestError("a task file names its images in its steps: -t is for "
                                      "quick builds")
        await self.check_queue_room()
        (run_id,) = await self.triggers.enqueue([self._held_here(quick_build(
            spec.platform, spec.model_dump_json(), task_file=True, values=values,
            secret_names=tuple(secrets), registry=spec.registry),
            uploaded is not None or bool(secrets))])
        self.secrets.hold(run_id, secrets)  # before the executor can plan it
        return run_view(await self._run(run_id))

    def _held_here(self, request: RunRequest, needs_this_daemon: bool) -> RunRequest:
        """A run whose uploaded context or secrets only this daemon holds runs here."""
        if needs_this_daemon and self.daemon_id is not None:
            return dataclasses.replace(request, daemon=self.daemon_id)
        return request

    def _check_context_url(self, url: str) -> None:
        """Refused before anything is queued: a local path (the daemon's disk is not the
        caller's), and file:// repositories unless the config allows them."""
        if parse_context(url).kind == "local":
            raise InvalidRequestError(f"{url} is not a URL: upload a local folder instead")
        self._check_remote_context(url)

    def _check_remote_context(self, url: str) -> None:
        if url_has_credentials(url):
            raise InvalidRequestError(f"{display_url(url)}: {CREDENTIALS_IN_URL}")
        source = parse_context(url)
        if source.location.startswith("file://") and not self.allow_file_contexts:
            raise InvalidRequestError("file:// contexts read the daemon's own disk and are "
                                      "refused; set allow_file_contexts: true to allow them")
        # The first URL, refused before anything is queued; its redirects and the addresses
        # its name resolves to are checked as the context is fetched.
        host = context_host(source)
        try:
            if host is not None:
                self.context_hosts.check_host(host)
        except AddressRefused as refused:
            raise InvalidRequestError(f"{display_url(url)}: {refused}") from None

    async def list_runs(self, task: str | None, status: str | None, image: str | None,
                        top: int) -> list[dict]:
        try:
            wanted = RunStatus(status) if status else None
        except ValueError:
            known = ", ".join(s.value for s in RunStatus)
            raise InvalidRequestError(f"status {status!r} is not one of {known}") from None
        if task == QUICK_TASK_NAME:
            task = ""
        runs = await self.store.runs.list(task=task, status=wanted, top=top, image=image)
        return [run_view(run) for run in runs]

    async def get_run(self, run_id: str) -> dict:
        """The run, with a task file's steps as far as they have ended."""
        run = await self._run(run_id)
        return run_view(run) | {"steps": [step_view(step) for step
                                          in await self.store.runs.steps(run_id)]}

    async def cancel_run(self, run_id: str) -> dict:
        run = await self._run(run_id)
        if run.status is RunStatus.RUNNING and self.daemon_id is not None \
                and run.daemon not in (None, self.daemon_id):
            raise ConflictError(f"run {run_id} is running on daemon "
                                f"{run.daemon.partition('/')[0]}: cancel it through that "
                                "daemon")
        if run.status.finished or not await self.executor.cancel(run_id):
            raise ConflictError(f"run {run_id} has already finished ({run.status.value})")
        run = await self._run(run_id)
        if run.status.finished:
            self.secrets.release(run_id)  # canceled while queued: no end hook will
        return run_view(run)

    async def update_run(self, run_id: str, archived: bool) -> dict:
        run = await self._run(run_id)
        if archived and not run.status.finished:
            raise ConflictError(f"run {run_id} is still {run.status.value}: archive it once it "
                                "has finished")
        reference = None
        if archived and self.archive is not None:
            # Another daemon's run: its log as the database has it.
            copied = await self.logs.copy_from_database(run_id)
            reference = await (
                self.archive.push(run_id, log_path(self.executor.logs_dir, run_id))
                if copied is None else self.archive.push_log(run_id, copied))
        await self.store.runs.set_archived(run_id, archived, reference if archived else None)
        return run_view(await self._run(run_id))

    async def run_log(self, run_id: str) -> LogSource:
        """The run's log, and a check of whether the run is still going (for following)."""
        await self._run(run_id)

        async def running() -> bool:
            return not (await self._run(run_id)).status.finished

        return self.logs.source(run_id, running)

    async def _run(self, run_id: str) -> Run:
        run = await self.store.runs.get(run_id)
        if run is None:
            raise NotFoundError(f"no run with ID {run_id}: `basewatch task list-runs` shows them")
        return run


def _timer(settings: TimerSettings) -> Timer:
    return Timer(settings.name, settings.schedule, settings.enabled)


def _refuse_config_timers(task: Task, source: str) -> None:
    if source == "config":
        raise ConflictError(f"task {task.name} comes from the config file, which owns its "
                            "timers: change them there and send the daemon SIGHUP")
