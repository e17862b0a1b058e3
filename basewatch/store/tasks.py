"""Task definitions, from the config file or the API, stored as the domain's Task in JSON.

Rows written by versions before the domain Task (the config model's JSON: `image`, and one
`platform` string) are read as well; a task is written back in today's form when it is next
registered.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace

from sqlalchemy import delete, select

from basewatch.context_spec import (
    checked_branch,
    checked_dockerfile_name,
    parse_context,
    without_credentials,
)
from basewatch.cron import CronSchedule
from basewatch.errors import BasewatchError
from basewatch.oci.platforms import Platform
from basewatch.store import schema
from basewatch.store.database import Database, now, to_text
from basewatch.store.schema import tasks
from basewatch.tasks import BaseImageTrigger, CommitTrigger, PullRequestTrigger, Task, Timer

log = logging.getLogger(__name__)


def task_json(task: Task) -> str:
    return json.dumps({
        "name": task.name, "context": task.context, "file": task.file,
        "images": list(task.images), "build_args": dict(task.build_args),
        "target": task.target, "platforms": [str(p) for p in task.platforms],
        "base_image_trigger": {"enabled": task.base_image_trigger.enabled,
                               "type": task.base_image_trigger.type},
        "push": task.push, "timeout": task.timeout,
        "timers": [{"name": t.name, "schedule": t.schedule, "enabled": t.enabled}
                   for t in task.timers],
        "commit_trigger": {"enabled": task.commit_trigger.enabled,
                           "branches": list(task.commit_trigger.branches)},
        "pull_request_trigger": {"enabled": task.pull_request_trigger.enabled,
                                 "allow_forks": task.pull_request_trigger.allow_forks},
        "webhook_secret_env": task.webhook_secret_env,
        "git_access_token_env": task.git_access_token_env,
        "report_status": task.report_status})


def _typed(value, kind, key: str):
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{key}: {value!r} is not what a task holds there")
    return value


def task_from_json(text: str) -> Task:
    """The task a row holds, in today's form or an older version's; ValueError (with the
    reason) for one that is refused today."""
    data = _typed(json.loads(text), dict, "definition")
    images = data["images"] if "images" in data else data.get("image", [])
    platforms = data["platforms"] if "platforms" in data else data.get("platform", "linux/amd64")
    if isinstance(platforms, str):  # an older version's one platform
        platforms = platforms.split(",")
    trigger = _typed(data.get("base_image_trigger", {}), dict, "base_image_trigger")
    trigger_type = trigger.get("type", "runtime")
    if trigger_type not in ("runtime", "all"):
        raise ValueError(f"base_image_trigger.type: {trigger_type!r} is not runtime or all")
    build_args = _typed(data.get("build_args", {}), dict, "build_args")
    for key, value in build_args.items():
        _typed(value, str, f"build_args.{key}")
    parsed = [Platform.parse(_typed(p, str, "platform"))
              for p in _typed(platforms, list, "platform")]
    if not parsed or any(p.os == "windows" for p in parsed):
        raise ValueError(f"platform: {platforms!r} cannot be built on this daemon's engine")
    context = _typed(data["context"], str, "context")
    parse_context(context)
    timeout = data.get("timeout", 3600.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout: {timeout!r} is not a number of seconds")
    target = data.get("target")
    commits = _typed(data.get("commit_trigger", {}), dict, "commit_trigger")
    pulls = _typed(data.get("pull_request_trigger", {}), dict, "pull_request_trigger")
    branches = _typed(commits.get("branches", []), list, "commit_trigger.branches")
    return Task(
        name=_typed(data["name"], str, "name"), context=context,
        images=[_typed(i, str, "image") for i in _typed(images, list, "image")],
        file=checked_dockerfile_name(_typed(data.get("file", "Dockerfile"), str, "file")),
        build_args=build_args, target=None if target is None else _typed(target, str, "target"),
        platforms=parsed,
        base_image_trigger=BaseImageTrigger(_typed(trigger.get("enabled", True), bool,
                                                    "base_image_trigger.enabled"), trigger_type),
        push=_typed(data.get("push", True), bool, "push"), timeout=float(timeout),
        timers=_timers(data.get("timers", [])),
        # Rows from before the commit and pull-request triggers read as their defaults.
        commit_trigger=CommitTrigger(
            _typed(commits.get("enabled", True), bool, "commit_trigger.enabled"),
            tuple(checked_branch(_typed(b, str, "commit_trigger.branches")) for b in branches)),
        pull_request_trigger=PullRequestTrigger(
            _typed(pulls.get("enabled", False), bool, "pull_request_trigger.enabled"),
            _typed(pulls.get("allow_forks", False), bool, "pull_request_trigger.allow_forks")),
        webhook_secret_env=_optional(data, "webhook_secret_env"),
        git_access_token_env=_optional(data, "git_access_token_env"),
        report_status=_typed(data.get("report_status", False), bool, "report_status"))


def _optional(data: dict, key: str) -> str | None:
    value = data.get(key)
    return None if value is None else _typed(value, str, key)


def _timers(items) -> tuple[Timer, ...]:
    """A task's timers (rows older versions wrote have none); each schedule checked again."""
    timers = []
    for item in _typed(items, list, "timers"):
        item = _typed(item, dict, "timers")
        schedule = CronSchedule.parse(_typed(item["schedule"], str, "timers.schedule"))
        timers.append(Timer(_typed(item["name"], str, "timers.name"), schedule.expression,
                            _typed(item.get("enabled", True), bool, "timers.enabled")))
    return tuple(timers)


def _task(row) -> Task | None:
    """The task a row holds; None, said once per read, for a definition an older version
    stored that this one refuses (a Dockerfile outside its context...): such a task is not
    built, and `basewatch task delete` removes it."""
    try:
        return task_from_json(row["definition"])
    except KeyError as exc:
        problem = f"{exc.args[0]} is missing"
    except (ValueError, BasewatchError) as exc:  # the core's own checks raise ContextError
        problem = str(exc)
    log.warning("task %s is ignored: its stored definition is refused (%s); delete it and "
                "create it again", row["name"], " ".join(problem.split()))
    return None


# Above this many rows, definitions are read in a thread: 10,000 take half a second, which
# the loop (and /healthz) should not wait through.
ROWS_READ_ON_THE_LOOP = 200


# Names bound in one query of `named`: well under either database's limit on parameters.
NAMES_PER_QUERY = 5000


async def _read_rows(rows) -> list[Task | None]:
    if len(rows) <= ROWS_READ_ON_THE_LOOP:
        return [_task(row) for row in rows]
    return await asyncio.to_thread(lambda: [_task(row) for row in rows])


class ParsedTasks:
    """The tasks read so far, by name, with the definition each was read from: a definition
    read again unchanged (nearly always) is not parsed again. A fan-out to 10,000 dependents,
    and every re-read of the task list, would otherwise parse each one anew. Task is frozen,
    so one object is handed out to every reader."""

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[str, Task]] = {}
        # Readers of thousands at once (the timers and the git poller, as the daemon starts)
        # parse each definition once between them: the second waits for the first's.
        self._parsing = asyncio.Lock()

    async def read(self, rows, every_task: bool = False) -> list[Task | None]:
        """The tasks `rows` hold (None for a definition refused today, said at each read);
        `every_task`: the rows are all the tasks there are, and the others are forgotten."""
        read = self._known(rows)
        if read.count(None) > ROWS_READ_ON_THE_LOOP:
            async with self._parsing:
                read = self._known(rows)
                await self._parse(rows, read)
        elif None in read:  # a few: parsed at once, not behind another reader's thousands
            await self._parse(rows, read)
        if every_task:
            names = {row["name"] for row in rows}
            self._by_name = {name: kept for name, kept in self._by_name.items()
                             if name in names}
        return read

    async def _parse(self, rows, read: list[Task | None]) -> None:
        """Fill in `read` where it has no task yet, parsing those rows' definitions."""
        unknown = [position for position, task in enumerate(read) if task is None]
        for position, task in zip(unknown, await _read_rows([rows[p] for p in unknown])):
            read[position] = task
            if task is not None:
                self._by_name[rows[position]["name"]] = (rows[position]["definition"], task)

    def _known(self, rows) -> list[Task | None]:
        """The tasks of `rows` read before from the same definition; None for the others."""
        read: list[Task | None] = []
        for row in rows:
            kept = self._by_name.get(row["name"])
            read.append(kept[1] if kept is not None and kept[0] == row["definition"] else None)
        return read

    def forget(self, name: str) -> None:
        self._by_name.pop(name, None)


class SQLiteTaskStore:
    def __init__(self, database: Database):
        self.database = database
        self._parsed = ParsedTasks()

    async def upsert(self, task: Task, source: str) -> None:
        await self.upsert_many([(task, source)])

    async def upsert_many(self, tasks: Sequence[tuple[Task, str]]) -> None:
        # Credentials never reach the database (they are refused at the edges; a task stored
        # by an older version loses them when it is written again).
        stamp = to_text(now())
        rows = [{"name": task.name, "source": source,
                 "definition": task_json(replace(task, context=without_credentials(task.context))),
                 "created_at": stamp, "updated_at": stamp} for task, source in tasks]
        if not rows:
            return
        insert = self.database.insert(schema.tasks)
        async with self.database.transaction() as db:
            # One statement, executed for every row (executemany): one transaction however
            # many tasks the batch holds.
            await db.execute(
                insert.on_conflict_do_update(index_elements=[schema.tasks.c.name], set_={
                    "source": insert.excluded.source, "definition": insert.excluded.definition,
                    "updated_at": insert.excluded.updated_at}), rows)

    async def get(self, name: str) -> Task | None:
        row = await self.database.fetchone(
            select(tasks.c.name, tasks.c.definition).where(tasks.c.name == name))
        return (await self._parsed.read([row]))[0] if row else None

    async def get_with_source(self, name: str) -> tuple[Task, str] | None:
        row = await self.database.fetchone(
            select(tasks.c.name, tasks.c.definition, tasks.c.source).where(tasks.c.name == name))
        task = (await self._parsed.read([row]))[0] if row else None
        return (task, row["source"]) if task is not None else None

    async def with_sources(self) -> list[tuple[Task, str]]:
        rows = await self.database.fetchall(
            select(tasks.c.name, tasks.c.definition, tasks.c.source).order_by(tasks.c.name))
        read = await self._parsed.read(rows, every_task=True)
        return [(task, row["source"]) for row, task in zip(rows, read) if task is not None]

    async def all(self, source: str | None = None) -> list[Task]:
        query = select(tasks.c.name, tasks.c.definition).order_by(tasks.c.name)
        if source is not None:
            query = query.where(tasks.c.source == source)
        rows = await self.database.fetchall(query)
        return [task for task in await self._parsed.read(rows, every_task=source is None)
                if task is not None]

    async def named(self, names: Iterable[str]) -> list[Task]:
        """The stored tasks among `names`, by name; only those read (a base's dependents,
        not every task). A name with no task, or whose definition is refused, is left out."""
        wanted = sorted(set(names))
        rows = []
        for start in range(0, len(wanted), NAMES_PER_QUERY):
            rows += await self.database.fetchall(
                select(tasks.c.name, tasks.c.definition)
                .where(tasks.c.name.in_(wanted[start:start + NAMES_PER_QUERY]))
                .order_by(tasks.c.name))
        return [task for task in await self._parsed.read(rows) if task is not None]

    async def names(self, source: str | None = None) -> set[str]:
        query = select(tasks.c.name)
        if source is not None:
            query = query.where(tasks.c.source == source)
        return {row["name"] for row in await self.database.fetchall(query)}

    async def delete(self, name: str) -> bool:
        async with self.database.transaction() as db:
            result = await db.execute(delete(tasks).where(tasks.c.name == name))
        self._parsed.forget(name)
        return result.rowcount > 0
