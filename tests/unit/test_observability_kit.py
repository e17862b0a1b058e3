"""docs/observability/: the scrape config and alert rules as promtool reads them, the alerts'
own unit tests, and the dashboard's expressions parsed and naming only metrics the daemon
exports (against a live daemon too: tests/e2e/test_observability.py)."""
from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client import generate_latest

from basewatch.metrics import Metrics, ReferenceState
from tests.support.promql import (KIT, alert_expressions, dashboard_expressions,
                                  exported_names, metric_names, promtool)


def _ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_accepts_the_rules_and_the_scrape_config():
    assert "SUCCESS: 6 rules found" in _ok(promtool("check", "rules", "alerts.yml"))
    assert "is valid prometheus config" in _ok(promtool("check", "config", "prometheus.yml"))


def test_the_alerts_fire_as_their_unit_tests_say():
    assert "SUCCESS" in _ok(promtool("test", "rules", "alerts_test.yml"))


def test_every_alert_has_a_unit_test():
    tested = {case["alertname"] for test in yaml.safe_load(
        (KIT / "alerts_test.yml").read_text())["tests"] for case in test["alert_rule_test"]}
    assert tested == set(alert_expressions())


def test_the_dashboards_expressions_are_promql(tmp_path: Path):
    # promtool parses each expression as a recording rule would be; Grafana's variables first
    # take values a query would give them.
    rules = [{"record": f"dashboard:expr{n}",
              "expr": expr.replace("$__rate_interval", "5m").replace("$instance", ".*")}
             for n, expr in enumerate(dashboard_expressions().values())]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _ok(promtool("check", "rules", str(path)))


def test_metric_names_are_read_as_promql_reads_them():
    assert metric_names('sum by (le, trigger) (rate(basewatch_x_bucket{a="b",c=~"$v"}'
                        '[$__rate_interval]))') == {"basewatch_x_bucket"}
    assert metric_names("time() - a_seconds > 3 * b_seconds unless on (job) c == 1") == {
        "a_seconds", "b_seconds", "c"}
    assert metric_names('histogram_quantile(0.95, sum(rate(x{le="+Inf"}[5m])))') == {"x"}
    assert metric_names("min_over_time(q[1h]) > 0 unless on (i) (sum by (i) (r) > 0)") == {
        "q", "r"}


def _exposition() -> str:
    metrics = Metrics()
    metrics.watch_queue(lambda: 0, lambda: 0)
    metrics.watch_references(lambda: 1)
    metrics.watch_rate_limits(dict)
    metrics.watch_reference_states(
        lambda: [ReferenceState("r/base:1", "linux/amd64", 1.0, 60.0, False)])
    return generate_latest(metrics.registry).decode()


def test_dashboard_and_alerts_name_only_metrics_the_daemon_defines():
    exported = exported_names(_exposition()) | {"up"}  # up: Prometheus's own, per target
    for where, expr in {**dashboard_expressions(), **alert_expressions()}.items():
        assert metric_names(expr), where
        assert metric_names(expr) <= exported, (where, metric_names(expr) - exported)
