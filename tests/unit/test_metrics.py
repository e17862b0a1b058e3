"""Metric names and the scrape-time gauges."""
from __future__ import annotations

from prometheus_client import generate_latest

from basewatch.metrics import Metrics, ReferenceState


def test_each_metrics_object_has_its_own_registry():
    first, second = Metrics(), Metrics()
    first.runs.labels("Manual", "Succeeded").inc()
    assert b'basewatch_runs_total{status="Succeeded",trigger="Manual"} 1.0' in \
        generate_latest(first.registry)
    assert b'trigger="Manual"} 0.0' in generate_latest(second.registry)


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


def test_every_way_a_run_ends_is_exported_from_the_start():
    # So increase() sees a first failure: a series that appears at 1 has no increase.
    text = generate_latest(Metrics().registry).decode()
    assert 'basewatch_runs_total{status="Failed",trigger="Image Update"} 0.0' in text
    assert 'basewatch_runs_total{status="Timeout",trigger="Manual"} 0.0' in text
    assert 'basewatch_run_duration_seconds_count{trigger="Commit"} 0.0' in text
    assert 'basewatch_git_polls_total{result="error"} 0.0' in text


def test_reference_states_are_read_at_scrape_time():
    metrics = Metrics()
    states = [ReferenceState("127.0.0.1:5000/base:1", "linux/amd64", 1700000000.0, 30.0, False),
              ReferenceState("127.0.0.1:5000/gone:1", "linux/arm64", 1700000100.5, 60.0, True)]
    metrics.watch_reference_states(lambda: states)
    text = generate_latest(metrics.registry).decode()
    labels = 'platform="linux/amd64",reference="127.0.0.1:5000/base:1"'
    assert f"basewatch_reference_last_check_timestamp_seconds{{{labels}}} 1.7e+09" in text
    assert f"basewatch_reference_poll_interval_seconds{{{labels}}} 30.0" in text
    assert f"basewatch_reference_failing{{{labels}}} 0.0" in text
    assert ('basewatch_reference_failing{platform="linux/arm64",'
            'reference="127.0.0.1:5000/gone:1"} 1.0') in text
    states.pop()
    assert "gone" not in generate_latest(metrics.registry).decode()


def test_runs_in_progress_reads_the_queue():
    metrics = Metrics()
    running = {"ca1", "ca2"}
    metrics.watch_queue(lambda: 0, lambda: len(running))
    assert "basewatch_runs_in_progress 2.0" in generate_latest(metrics.registry).decode()
