"""The long-lived daemon: builds the parts (watcher, triggers, run queue, builder, HTTP edge),
wires them together, and runs start, SIGHUP's reload and shutdown; it holds no logic of its own.
The process around it (signals, the port answering before the daemon exists) is basewatch/serve.py.

Shutdown order is written down: stop taking requests, stop watching, cancel runs in progress
(they are marked Canceled), close the engine threads, the registry client and the database.
Queued runs stay queued in the database and resume on the next start.
"""
from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
import uuid
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from basewatch.builder.backends.docker.backend import DockerBackend
from basewatch.builder.backends.docker.docker_engine import DockerEngine
from basewatch.builder.backends.docker.engine import EngineTLS
from basewatch.builder.backends.pool.engine_pool import (
    PING_TIMEOUT_SECONDS,
    EnginePool,
    PoolMember,
)
from basewatch.builder.contexts.checkout import Checkouts, git_credentials
from basewatch.builder.executor import RunExecutor
from basewatch.builder.log_archive import LogArchive
from basewatch.builder.planner import RunPlanner
from basewatch.builder.quick_runs import QuickRuns
from basewatch.builder.run_log_copy import RunLogCopies
from basewatch.builder.run_log_reader import RunLogReader
from basewatch.builder.run_secrets import RunSecrets
from basewatch.cascades import Cascades
from basewatch.commit_status import CommitStatuses
from basewatch.config import (
    Config,
    EngineSettings,
    database_url,
    load_config,
    missing_environment,
    missing_files,
    secret_values,
)
from basewatch.config_sync import ConfigSync, context_in_config
from basewatch.errors import BasewatchError, ConfigError, EngineError
from basewatch.health import HostProbe, health_report
from basewatch.http.app import create_app
from basewatch.http.dashboard import add_dashboard
from basewatch.http.source_webhooks import add_source_webhooks
from basewatch.http.starting import StartingServer
from basewatch.http.uploads import receive_upload
from basewatch.http.webhooks import add_registry_webhook
from basewatch.membership import Membership
from basewatch.metrics import Metrics
from basewatch.netpolicy import HostPolicy
from basewatch.oci.image_sources import ImageSources
from basewatch.oci.platforms import Platform
from basewatch.oci.registry import RegistryClient
from basewatch.queue_feed import QueueFeed
from basewatch.redaction import KNOWN
from basewatch.retention import RetentionSchedule
from basewatch.run_events import RunEvents
from basewatch.runqueue import RunQueue
from basewatch.scm.api import ScmApi
from basewatch.scm.hosts import api_policy
from basewatch.services import Services
from basewatch.store import SQLiteStore, Store
from basewatch.task_webhooks import TaskWebhooks
from basewatch.triggers import Triggers
from basewatch.triggers.base_image import FanOut
from basewatch.triggers.commits import CommitTriggers
from basewatch.triggers.timers import TimerScheduler
from basewatch.watcher.digest_watch import DigestWatcher
from basewatch.watcher.git_poll import GitPoller
from basewatch.watcher.push_matching import PushMatcher
from basewatch.watcher.registration import TaskRegistrar
from basewatch.watcher.reregistration import Reregistration

log = logging.getLogger(__name__)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


class Daemon:
    def __init__(self, config: Config, docker_host: str | None = None,
                 config_path: Path | None = None, tasks_from_file: bool = False,
                 listener: StartingServer | None = None):
        self.config = config
        # Where `basewatch serve` has answered since the process started: its sockets are
        # taken over as this daemon serves (None: the daemon binds config.listen itself).
        self.listener = listener
        self.config_path = config_path
        # `config` is the file's settings only (load_settings): its tasks are read once the
        # daemon serves, so a config of thousands answers /healthz at once all the same.
        self.tasks_from_file = tasks_from_file
        self.docker_host = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        self.store: Store | None = None
        self.registry_client: RegistryClient | None = None
        self.archive_client: RegistryClient | None = None
        self.metrics = Metrics()
        # Runs queued, started and ended, tasks changed: what the dashboard's pages follow.
        self.events = RunEvents()
        self.retention: RetentionSchedule | None = None
        self.queue: RunQueue | None = None
        self.executor: RunExecutor | None = None
        self.log_copies: RunLogCopies | None = None  # runs' logs into a shared database
        self.watcher: DigestWatcher | None = None
        self.git_poller: GitPoller | None = None
        self._runner: web.AppRunner | None = None
        self._watch_task: asyncio.Task | None = None
        self.timers: TimerScheduler | None = None
        self._timers_task: asyncio.Task | None = None
        self._git_poll_task: asyncio.Task | None = None
        self._registration: asyncio.Task | None = None
        self.config_sync: ConfigSync | None = None
        self.scm_api: ScmApi | None = None
        self.commit_statuses: CommitStatuses | None = None
        self.webhooks: TaskWebhooks | None = None
        self.pool: EnginePool | None = None  # the build engines, when the config lists them
        # This daemon among others on one PostgreSQL (always the leader on SQLite).
        self.membership: Membership | None = None
        self.feed: QueueFeed | None = None  # runs other daemons queued (PostgreSQL)
        self._feed_task: asyncio.Task | None = None
        self.host = HostProbe(self._ping_engine, config.state_dir)

    async def start(self) -> None:
        """Serve, and return once the config's tasks are registered."""
        await self.start_serving()
        try:
            await self.registered()
        except BaseException:
            await self.stop()
            raise

    async def start_serving(self) -> None:
        """Serve at once; the config's tasks are registered in the background (`registered`)."""
        try:
            await self._start()
        except BaseException:
            await self.stop()  # nothing half-started is left behind
            raise

    async def _start(self) -> None:
        config = self.config
        # Every variable missing at once, as check-config reports them, not one per try.
        if missing := missing_environment(config) + missing_files(config):
            raise ConfigError("\n".join(missing))
        KNOWN.add(*secret_values(config))  # masked in this daemon's log from here on
        notification_token = self._secret("notifications.token_env",
                                          config.notifications and config.notifications.token_env)
        api_token = self._secret("api_token_env", config.api_token_env)
        # Logs, contexts and uploads live in state_dir whichever database holds the state.
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = store = await self._open_store()
        quick_runs = QuickRuns(config.state_dir / "contexts")
        self.membership = Membership(
            store, config.cluster, config.listen, on_rerun=lambda run_id: self._submit(run_id),
            on_runs_queued=lambda: self.feed.wake() if self.feed is not None else None,
            on_reaped=self.metrics.dead_daemon_runs.inc,
            on_leading=lambda leading: self._leadership_changed(),
            held_uploads=quick_runs.uploads)
        if not self.membership.shared:
            # The one daemon on this database: whatever was in progress was its own.
            interrupted = await store.runs.fail_unfinished(
                "the daemon stopped while the run was in progress")
            for failed, rerun in interrupted:
                log.warning("run %s was interrupted when the daemon stopped: marked Failed%s",
                            failed, f", re-queued as {rerun}" if rerun
                            else " (already a re-run)")
        if config.build_network == "host":
            log.warning("build_network is host: every Dockerfile's RUN steps can reach this "
                        "host's loopback services, this daemon and its registry included")
        self.registry_client = RegistryClient(config.registries, guard_addresses=True)
        # The git hosts' APIs: webhooks registered and commit statuses posted with tasks' tokens.
        self.scm_api = ScmApi(api_policy(config.git_hosts))
        self.webhooks = TaskWebhooks(store, self.scm_api, config.git_hosts, config.public_url)
        self.commit_statuses = CommitStatuses(store.tasks, self.scm_api, config.git_hosts,
                                              config.public_url)
        run_registry = config.run_registry
        checkouts = Checkouts(config.state_dir / "contexts", config.max_context_bytes,
                              HostPolicy.for_contexts(config.allowed_context_hosts),
                              trusted=lambda context: context_in_config(self.config, context),
                              git_credentials=git_credentials(config.git_credentials),
                              local_contexts_root=config.local_contexts_root)
        if discarded := checkouts.discard_leftovers():
            log.info("removed %d context folder(s) left by a stopped daemon", discarded)
        self.registrar = TaskRegistrar(store, self.registry_client, run_registry, checkouts,
                                       on_change=self._tasks_changed,
                                       image_aliases=config.aliases)
        # The runs' --set-secret values: in this process's memory only, until each run ends.
        run_secrets = RunSecrets()
        planner = RunPlanner(store, checkouts, quick_runs, run_registry,
                             on_context_changed=Reregistration(store, self.registrar)
                             .on_context_changed,
                             on_revision=self.commit_statuses.on_revision,
                             image_aliases=config.aliases, secrets=run_secrets)
        cascades = Cascades(self.registrar, lambda: self.watcher)
        if config.engines is None:
            backend = self._docker_backend(self.docker_host, None, config.max_concurrent_runs)
        else:
            # Slots claimed in the store: an engine's max_concurrent_runs holds across every
            # daemon on one PostgreSQL (in memory on SQLite).
            self.pool = backend = EnginePool([self._pool_member(e) for e in config.engines],
                                             on_assigned=store.runs.record_engine,
                                             slots=store.engine_slots,
                                             daemon_id=self.membership.daemon_id)
        # On PostgreSQL, several daemons may share the store: each run's log is copied into it
        # as it is written, and a log this daemon has no file of (another daemon's run) is
        # read from there. On SQLite (one daemon) the files are all there is, as always.
        shared_logs = self.membership.shared
        self.log_copies = RunLogCopies(store.run_logs) if shared_logs else None
        log_reader = RunLogReader(config.state_dir / "logs",
                                  store.run_logs if shared_logs else None)
        self.executor = RunExecutor(
            store, planner, backend, config.state_dir / "logs",
            on_finished=self._after_run(self.events.run_finished, run_secrets.forget,
                                        cascades.on_finished, self.commit_statuses.on_finished),
            upstream_of=cascades.upstream_of, metrics=self.metrics,
            max_log_bytes=config.max_log_bytes,
            on_started=self._after_run(self.events.run_started, self.commit_statuses.on_started),
            requeue=lambda run_id: self._submit(run_id),
            has_room=self.pool.has_room if self.pool is not None else None,
            daemon_id=self.membership.daemon_id,
            log_copies=self.log_copies)
        if orphans := self.executor.quick_runs.discard_orphans(await store.runs.queued()):
            log.info("removed %d upload(s) no queued run needs", orphans)
        self.queue = RunQueue(self.executor.execute, self.pool.slots if self.pool is not None
                              else config.max_concurrent_runs)
        self.triggers = Triggers(store.runs, self._submit)
        if self.membership.shared:
            self.feed = QueueFeed(store.runs, self._submit_queued)
        # Joined once the queue is there: the first beat re-queues what dead daemons held.
        await self.membership.start()
        # Where webhook receivers and the git poller hand the commits they see.
        self.commit_triggers = CommitTriggers(store.tasks, self.triggers)
        self.fanout = FanOut(store, self.triggers, config.settle_window)
        self.watcher = DigestWatcher(store.graph, self.registry_client, self.fanout.on_change,
                                     self._poll_interval, metrics=self.metrics,
                                     on_shown_change=self.events.graph_changed,
                                     is_leader=self.membership.is_leader)
        if config.git_poll_interval > 0:
            self.git_poller = GitPoller(store.tasks.all, store.git_heads, checkouts,
                                        self.commit_triggers, config.git_poll_interval,
                                        metrics=self.metrics,
                                        is_leader=self.membership.is_leader)
        self.config_sync = ConfigSync(store, self.registrar, self._tasks_changed, self.webhooks)
        self.metrics.watch_queue(lambda: self.queue.depth, lambda: len(self.queue.running))
        self.metrics.watch_engines(self.pool.states if self.pool is not None
                                   else self._local_engine_state)
        self.metrics.watch_references(lambda: self.watcher.watched_count)
        self.metrics.watch_leadership(self.membership.is_leader)
        self.metrics.watch_reference_states(self.watcher.reference_states)
        self.metrics.watch_rate_limits(lambda: dict(self.registry_client.rate_limit_remaining))

        if self.pool is not None:
            await self.pool.start()
        archive = None
        if config.log_archive:
            # Its own client, without the address guard: the operator named this registry.
            self.archive_client = RegistryClient(config.registries, attempts=3, timeout=60.0)
            archive = LogArchive(config.log_archive.repository, self.archive_client)
        self.services = Services(store, self.registrar, self.executor, self.triggers,
                                 archive, config.allow_file_contexts,
                                 config.allowed_context_hosts, config.local_contexts_root,
                                 max_queued_runs=config.max_queued_runs,
                                 webhooks=self.webhooks, secrets=run_secrets,
                                 unregistered=self.config_sync.unregistered,
                                 registration=self.config_sync.progress,
                                 daemon_id=self.membership.daemon_id
                                 if self.membership.shared else None,
                                 log_reader=log_reader)
        self.retention = RetentionSchedule(store.runs, config.state_dir / "logs",
                                           timedelta(seconds=config.retention),
                                           timedelta(seconds=config.purge_interval),
                                           is_leader=self.membership.is_leader)
        self.retention.start()
        app = create_app(self.health, self.services, api_token, self.metrics,
                         self.receive_context,
                         starting=lambda: not self.config_sync.progress.started)
        add_dashboard(app, self.services, api_token, self.events)
        add_registry_webhook(app, notification_token,
                             PushMatcher(self.watcher).on_push_notifications, self.metrics,
                             seen=store.notifications)
        add_source_webhooks(app, store.tasks, self.metrics, sink=self.commit_triggers,
                            kept_secrets=self.webhooks.secrets)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Taken over as they are, the sockets never stop listening: a connection made in
        # between waits in the backlog.
        sites = ([web.SockSite(self._runner, sock) for sock in self.listener.hand_over()]
                 if self.listener is not None
                 else [web.TCPSite(self._runner, config.listen_host, config.listen_port)])
        try:
            for site in sites:
                await site.start()
        except OSError as exc:
            raise BasewatchError(f"cannot listen on {config.listen}: {exc.strerror}") from None
        log.info("listening on %s; registering %d config tasks", config.listen,
                 len(config.tasks))
        # Served first, registered after: /healthz answers at once (503, `starting`, with the
        # progress) however many tasks the config has.
        self._registration = asyncio.create_task(self._register_config(),
                                                 name="config registration")

    async def _register_config(self) -> None:
        """The config's tasks registered, then what works on the whole graph started: the
        run queue (a queued run is planned from its task as the config now has it), the
        watcher (a partial graph would take a base change as seen by the tasks not yet
        registered), the timers (one the file no longer has never fires) and the git poller."""
        store = self.store
        # The engine's state is logged beside the registration: a slow ping (an engine still
        # starting) holds up neither it nor /healthz.
        await asyncio.gather(self._report_engine(), self._sync_config())
        self.queue.start()
        for run in await store.runs.queued():
            self.queue.submit(run.id)
        if self.feed is not None:
            self._feed_task = asyncio.create_task(self.feed.run(), name="queue feed")
        self._watch_task = asyncio.create_task(self.watcher.run(), name="watcher")
        # With several daemons, a timer added through another daemon's API reaches the
        # leader's timers at its next re-read of the tasks.
        self.timers = TimerScheduler(
            store.tasks, store.timers, self.triggers, is_leader=self.membership.is_leader,
            reread_tasks=timedelta(seconds=30) if self.membership.shared else None)
        self._timers_task = asyncio.create_task(self.timers.run(), name="timers")
        if self.git_poller is not None:
            self._git_poll_task = asyncio.create_task(self.git_poller.run(), name="git poller")
        # Ready before the first await: the timers' and the poller's first reads of every task
        # run from here on, and are no part of starting.
        self.config_sync.progress.ready()
        log.info("basewatch is watching %d base references for %d tasks; listening on %s",
                 len(await store.graph.watched()), len(await store.tasks.names()),
                 self.config.listen)

    async def _sync_config(self) -> None:
        if self.tasks_from_file:
            self.config = await asyncio.to_thread(self._with_file_tasks)
        await self.config_sync.sync(self.config.tasks)

    def _with_file_tasks(self) -> Config:
        """The running settings with the config file's tasks: the file read whole, as a
        start before serving would have read it (a bad task, or an environment variable it
        needs unset, stops the daemon)."""
        config = load_config(self.config_path)
        if missing := missing_environment(config):
            raise ConfigError("\n".join(missing))
        KNOWN.add(*secret_values(config))  # the tasks' secrets too, masked from here on
        if config.model_copy(update={"tasks": []}) != self.config:
            log.warning("the config file changed as the daemon started: its tasks are "
                        "applied; other changed settings take effect after a restart")
        return self.config.model_copy(update={"tasks": config.tasks})

    async def registered(self) -> None:
        """Wait until the config's tasks are registered and the watch has started; raises
        what stopped the registration, if anything did."""
        if self._registration is not None:
            await asyncio.shield(self._registration)

    def _docker_backend(self, docker_host: str, tls: EngineTLS | None,
                        max_concurrent_runs: int) -> DockerBackend:
        config = self.config
        return DockerBackend(
            lambda: DockerEngine(docker_host, network=config.build_network, tls=tls),
            ImageSources(config.registries), self.registry_client,
            threads=max_concurrent_runs * 2,
            allow_privileged=config.allow_privileged_steps,
            allow_engine_access=config.allow_engine_access)

    def _pool_member(self, settings: EngineSettings) -> PoolMember:
        tls = None if settings.tls is None else EngineTLS(settings.tls.ca, settings.tls.cert,
                                                          settings.tls.key)
        return PoolMember(
            settings.name, self._docker_backend(settings.host, tls, settings.max_concurrent_runs),
            DockerEngine(settings.host, timeout=PING_TIMEOUT_SECONDS, tls=tls).ping,
            settings.max_concurrent_runs,
            None if settings.platforms is None else tuple(map(Platform.parse, settings.platforms)))

    def _local_engine_state(self) -> dict[str, dict]:
        """Without `engines:`, the one local engine as the pool's engines are shown, so
        dashboards and alerts on basewatch_engine_* work either way: as last probed for
        /healthz (nothing before the first probe), with every run in progress on it."""
        state = self.host.last
        if state is None:
            return {}
        return {"local": {"state": "up" if state.engine_error is None else "down",
                          "runs": len(self.queue.running)}}

    def _ping_engine(self) -> None:
        """/healthz's `engine`: the local engine answers; with a pool, one of its engines."""
        if self.pool is None:
            DockerEngine(self.docker_host).ping()
            return
        states = self.pool.states()
        if not any(state["state"] == "up" for state in states.values()):
            raise EngineError("no build engine answers: " + "; ".join(
                f"{name}: {state.get('error')}" for name, state in states.items()))

    async def _open_store(self) -> Store:
        """PostgreSQL when `database.url_env` names it, else SQLite in state_dir."""
        url = database_url(self.config)
        if url is None:
            return await SQLiteStore.open(self.config.state_dir / "basewatch.db")
        parts = urllib.parse.urlsplit(url)
        log.info("store: PostgreSQL at %s:%s%s", parts.hostname, parts.port or 5432, parts.path)
        return await SQLiteStore.open_url(url)

    @staticmethod
    def _secret(key: str, variable: str | None) -> str | None:
        """A secret the config names by environment variable; configured but unset is fatal."""
        if variable is None:
            return None
        value = os.environ.get(variable)
        if not value:
            raise BasewatchError(f"{key}: the environment variable {variable} is not set")
        return value

    @staticmethod
    def _after_run(*hooks):
        """The executor's end hook: each of `hooks` in turn, one's failure not stopping the
        next."""
        async def after(run) -> None:
            for hook in hooks:
                try:
                    await hook(run)
                except Exception:
                    log.exception("run %s: what follows its end failed", run.id)
        return after

    async def receive_context(self, request: web.Request, part=None) -> Path:
        """Extract an uploaded context tarball (the body, or one multipart part) into a
        folder of its own (bounded in size)."""
        destination = self.executor.quick_runs.upload_dir(uuid.uuid4().hex)
        try:
            await receive_upload(request, destination, self.config.max_context_bytes, part)
        except BaseException:
            self.executor.quick_runs.discard(destination)
            raise
        return destination

    def _submit_queued(self, run_id: str) -> None:
        """A queued run another daemon may have written: offered to this daemon's queue."""
        if not self.queue.holds(run_id):
            self._submit(run_id)

    def _submit(self, run_id: str, delay: float = 0.0) -> None:
        """A run written to the store goes to the queue, and its pages hear of it."""
        self.queue.submit(run_id, delay)
        self.events.run_queued(run_id)

    def _poll_interval(self, registry_host: str) -> float:
        settings = self.config.registry(registry_host)
        if settings is not None and settings.poll_interval is not None:
            return settings.poll_interval
        return self.config.poll_interval

    async def _report_engine(self) -> None:
        state = await self.host.state()
        if state.engine_error is not None:
            log.error("%s; builds will fail until it is back", state.engine_error)
        if state.disk_problem is not None:
            log.error("%s", state.disk_problem)

    def _leadership_changed(self) -> None:
        """This daemon took or lost the lead: the watch's loops look again at once."""
        for duty in (self.watcher, self.git_poller, self.timers):
            if duty is not None:
                duty.leadership_changed()

    def _tasks_changed(self) -> None:
        """A task was registered, changed or removed: its bases and its remote are watched
        (or not) and its timers counted (or not) now, not at the next periodic re-read."""
        if self.watcher is not None:
            self.watcher.refresh()
        if self.git_poller is not None:
            self.git_poller.refresh()
        if self.timers is not None:
            self.timers.refresh()
        self.events.tasks_changed()

    async def health(self) -> dict:
        progress = self.config_sync.progress
        return health_report(await self.host.state(), await self.store.graph.watched(),
                             self.queue.depth, self.queue.running,
                             self.git_poller.problems() if self.git_poller else {},
                             self.webhooks.problems if self.webhooks else {},
                             self.config_sync.problems(),
                             self.pool.states() if self.pool is not None else None,
                             registration=progress.view(), starting=not progress.started,
                             cluster=await self.membership.view()
                             if self.membership.shared else None)

    async def stop(self) -> None:
        if self._registration is not None:
            # A stop mid-registration: the batch being stored is one transaction, rolled back.
            self._registration.cancel()
            await asyncio.gather(self._registration, return_exceptions=True)
            self._registration = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for watch in (self._watch_task, self._git_poll_task, self._timers_task,
                      self._feed_task):
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
        self._watch_task = self._git_poll_task = self._timers_task = self._feed_task = None
        if self.config_sync is not None:
            await self.config_sync.close()
        if self.pool is not None:
            await self.pool.stop()
        if self.queue is not None:
            await self.queue.stop()
        if self.membership is not None:
            # After the queue: its runs were queued again as they were cut short.
            await self.membership.stop()
        if self.executor is not None:
            self.executor.close()
        if self.log_copies is not None:
            await self.log_copies.stop()
        if self.commit_statuses is not None:
            await self.commit_statuses.close()
        if self.scm_api is not None:
            await self.scm_api.close()
            self.scm_api = None
        self.host.close()
        if self.retention is not None:
            await self.retention.stop()
        for client in (self.registry_client, self.archive_client):
            if client is not None:
                await client.close()
        if self.store is not None:
            if self.watcher is not None:
                await self.watcher.flush()
            await self.store.close()
            self.store = None

    async def reload(self) -> None:
        """SIGHUP: re-read the config file's tasks. Queued runs stay queued; other settings
        (listen, registries, tokens) take a restart."""
        if self.config_path is not None and self.config_sync is not None:
            self.config = await self.config_sync.reload(self.config, self.config_path)
