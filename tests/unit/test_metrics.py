"""Metric names and the scrape-time gauges."""
from __future__ import annotations

from prometheus_client import generate_latest

from basewatch.metrics import Metrics


def test_each_metrics_object_has_its_own_registry():
    first, second = Metrics(), Metrics()
    first.runs.labels("Manual", "Succeeded").inc()
    assert b'basewatch_runs_total{status="Succeeded",trigger="Manual"} 1.0' in \
        generate_latest(first.registry)
    assert b"Manual" not in generate_latest(second.registry)


def test_scrape_time_gauges_read_their_sources():
    metrics = Metrics()
    remaining = {"docker.io": 97}
    metrics.watch_rate_limits(lambda: remaining)
    metrics.watch_queue(lambda: 3)
    metrics.watch_references(lambda: 12)
    text = generate_latest(metrics.registry).decode()
    assert 'basewatch_registry_rate_limit_remaining{registry="docker.io"} 97.0' in text
    assert "basewatch_queue_depth 3.0" in text
    assert "basewatch_watched_references 12.0" in text
    remaining["docker.io"] = 96
    assert 'registry="docker.io"} 96.0' in generate_latest(metrics.registry).decode()


def test_names_follow_prometheus_conventions():
    text = generate_latest(Metrics().registry).decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    for name in names:
        assert name.startswith("basewatch_")
    assert {"basewatch_digest_checks_total", "basewatch_run_duration_seconds"} <= {
        n if not n.endswith("_total") else n for n in names} | {
        n + "_total" for n in names}
