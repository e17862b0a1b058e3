"""`basewatch check-config`: every problem `serve` would meet in a config file, at once.

The checks are the daemon's own: the config's validation (`load_config`), the environment
variables and files it refuses to start without (`missing_environment`, `missing_files`), and
each task read and analysed as registration reads it (`analyse_task`), so the two cannot drift
apart.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from basewatch.builder.contexts.checkout import Checkouts, git_credentials
from basewatch.config import (
    Config,
    TaskSettings,
    database_url,
    load_config,
    missing_environment,
    missing_files,
)
from basewatch.errors import BasewatchError, ConfigError
from basewatch.netpolicy import HostPolicy
from basewatch.watcher.registration import analyse_task


@dataclass
class ConfigReport:
    config: Config
    problems: list[str] = field(default_factory=list)  # one line each, `FILE: where: what`
    unchecked: list[str] = field(default_factory=list)  # remote contexts' tasks not fetched


async def check_config(path: Path, fetch: bool = False,
                       environ: Mapping[str, str] = os.environ) -> ConfigReport:
    """Every problem of the config file at `path`; raises ConfigError (one line per problem)
    when it does not even validate. Remote contexts are fetched only when `fetch` is set."""
    config = load_config(path)
    report = ConfigReport(config, [f"{path}: {line}"
                                   for line in missing_environment(config, environ)
                                   + missing_files(config)])
    if config.database is not None and environ.get(config.database.url_env):
        try:
            database_url(config, environ)  # its form only: nothing is connected to
        except ConfigError as exc:
            report.problems.append(f"{path}: {exc}")
    with tempfile.TemporaryDirectory(prefix="basewatch-check-") as scratch:
        checkouts = _checkouts(config, Path(scratch)) if fetch else None
        for index, settings in enumerate(config.tasks):
            if not settings.local_context and checkouts is None:
                report.unchecked.append(settings.name)
                continue
            try:
                await _read_task(config, settings, checkouts)
            except BasewatchError as exc:
                where = f"{path}: tasks[{index}] (task {settings.name})"
                report.problems += [f"{where}: {line}" for line in str(exc).splitlines()]
    return report


async def _read_task(config: Config, settings: TaskSettings, checkouts: Checkouts | None
                     ) -> None:
    task = settings.to_task()
    if settings.local_context:
        await analyse_task(task, Path(settings.context), config.run_registry, config.aliases)
        return
    async with checkouts.for_registration(settings.context) as checkout:
        await analyse_task(task, checkout.folder, config.run_registry, config.aliases)


def _checkouts(config: Config, root: Path) -> Checkouts:
    """Fetches as the daemon makes them for its config's tasks (trusted: the author chose
    them), into a scratch folder."""
    try:
        credentials = git_credentials(config.git_credentials)
    except BasewatchError:  # already reported as a missing variable: fetch anonymously
        credentials = {}
    return Checkouts(root, config.max_context_bytes,
                     HostPolicy.for_contexts(config.allowed_context_hosts),
                     trusted=lambda context: True, git_credentials=credentials)
