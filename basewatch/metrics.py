"""Prometheus metrics. Each daemon owns its registry, so two daemons in one process (tests)
never share counters. Components record through this object; nothing else imports
prometheus_client."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from basewatch.models import RunStatus, Trigger

# How a run can end: each (trigger, status) is exported from the start, at 0, so the first
# failure is an increase that rate() and increase() see, not a series appearing at 1.
FINAL_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.ERROR,
                  RunStatus.TIMEOUT)
GIT_POLL_RESULTS = ("ok", "changed", "error")


class _RateLimitCollector(Collector):
    """Registry rate-limit headroom, read at scrape time from the registry client."""

    def __init__(self, remaining: Callable[[], dict[str, int]]):
        self._remaining = remaining

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "basewatch_registry_rate_limit_remaining",
            "Pulls left in the registry's rate-limit window (Docker Hub's ratelimit-remaining)",
            labels=["registry"])
        for registry, remaining in sorted(self._remaining().items()):
            family.add_metric([registry], remaining)
        yield family


@dataclass(frozen=True)
class ReferenceState:
    """One watched (reference, platform), as the watcher sees it now."""

    reference: str
    platform: str
    last_check: float  # Unix time of the last check, whatever its result (or of watching's start)
    poll_interval: float  # seconds between checks while it answers
    failing: bool  # its last check failed


class _ReferenceCollector(Collector):
    """Per watched reference, read at scrape time from the watcher: when it was last checked,
    how often it should be, whether it is failing. A reference not checked for several
    intervals means a stuck watcher; the alert rules in docs/observability/ say so."""

    def __init__(self, states: Callable[[], Iterable[ReferenceState]]):
        self._states = states

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["reference", "platform"]
        checked = GaugeMetricFamily(
            "basewatch_reference_last_check_timestamp_seconds",
            "When each watched reference was last checked (Unix time), whatever the result; "
            "until its first check, when it began to be watched", labels=labels)
        interval = GaugeMetricFamily(
            "basewatch_reference_poll_interval_seconds",
            "How often each watched reference is checked while its registry answers",
            labels=labels)
        failing = GaugeMetricFamily(
            "basewatch_reference_failing",
            "1 when the reference's last check failed (it then backs off), else 0",
            labels=labels)
        for state in sorted(self._states(), key=lambda s: (s.reference, s.platform)):
            key = [state.reference, state.platform]
            checked.add_metric(key, state.last_check)
            interval.add_metric(key, state.poll_interval)
            failing.add_metric(key, 1.0 if state.failing else 0.0)
        yield from (checked, interval, failing)


class _EngineCollector(Collector):
    """The build pool's engines, read at scrape time from the pool: up or down, runs on each."""

    def __init__(self, states: Callable[[], dict[str, dict]]):
        self._states = states

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily("basewatch_engine_up", "1 while the build engine answers, 0 "
                               "while it is down (without engines: the local one, as \"local\")", labels=["engine"])
        runs = GaugeMetricFamily("basewatch_engine_runs", "Runs in progress on the build "
                                 "engine, from every daemon sharing the database (the other "
                                 "daemons' as last read)", labels=["engine"])
        for engine, state in sorted(self._states().items()):
            up.add_metric([engine], 1 if state["state"] == "up" else 0)
            runs.add_metric([engine], state["runs"])
        yield up
        yield runs


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.watched_references = Gauge(
            "basewatch_watched_references", "Base references (per platform) being watched",
            registry=r)
        self.digest_checks = Counter(
            "basewatch_digest_checks_total", "Digest checks, by registry and result "
            "(same, changed, first, error)", ["registry", "result"], registry=r)
        self.digest_changes = Counter(
            "basewatch_digest_changes_total", "Base digest changes seen", ["registry"],
            registry=r)
        self.notifications_received = Counter(
            "basewatch_notifications_received_total", "Registry push notifications accepted",
            ["source"], registry=r)
        self.notifications_rejected = Counter(
            "basewatch_notifications_rejected_total", "Registry notification requests refused",
            ["reason"], registry=r)
        self.source_events = Counter(
            "basewatch_source_events", "Git server webhook deliveries, by provider, event (push, "
            "pull_request, ping; unknown before a delivery is authenticated and parsed, other "
            "for an event basewatch does not build on) and result (queued, ignored, unwanted, "
            "duplicate, ping, unauthorized, malformed, too_large, error)",
            ["provider", "event", "result"], registry=r)
        self.git_polls = Counter(
            "basewatch_git_polls_total", "git ls-remote polls of a remote, by result (ok, "
            "changed: a head moved, error)", ["result"], registry=r)
        self.runs = Counter(
            "basewatch_runs_total", "Finished runs, by trigger and status", ["trigger", "status"],
            registry=r)
        self.run_duration = Histogram(
            "basewatch_run_duration_seconds", "Run duration, from start to finish", ["trigger"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, float("inf")), registry=r)
        self.queue_depth = Gauge(
            "basewatch_queue_depth", "Runs queued and not yet started", registry=r)
        self.runs_in_progress = Gauge(
            "basewatch_runs_in_progress", "Runs being carried out now", registry=r)
        self.leader = Gauge(
            "basewatch_leader", "1 while this daemon leads the watch (registry polls, timers, "
            "git polls), else 0; always 1 for a daemon alone on its database", registry=r)
        self.dead_daemon_runs = Counter(
            "basewatch_dead_daemon_runs_total", "Runs in progress on a daemon that died, failed "
            "(and queued again once) by this daemon", registry=r)
        for trigger in Trigger:
            self.run_duration.labels(trigger.value)
            for status in FINAL_STATUSES:
                self.runs.labels(trigger.value, status.value)
        for result in GIT_POLL_RESULTS:
            self.git_polls.labels(result)

    def watch_queue(self, depth: Callable[[], int],
                    running: Callable[[], int] | None = None) -> None:
        self.queue_depth.set_function(depth)
        if running is not None:
            self.runs_in_progress.set_function(running)

    def watch_reference_states(self, states: Callable[[], Iterable[ReferenceState]]) -> None:
        self.registry.register(_ReferenceCollector(states))

    def watch_references(self, count: Callable[[], int]) -> None:
        self.watched_references.set_function(count)

    def watch_rate_limits(self, remaining: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_RateLimitCollector(remaining))

    def watch_leadership(self, leading: Callable[[], bool]) -> None:
        self.leader.set_function(lambda: 1.0 if leading() else 0.0)

    def watch_engines(self, states: Callable[[], dict[str, dict]]) -> None:
        """The build pool's engines (`engines:`): name -> {"state": up|down, "runs": n}."""
        self.registry.register(_EngineCollector(states))
