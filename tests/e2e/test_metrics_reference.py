"""docs/metrics.md against a live daemon: the metrics a running daemon serves at /metrics are
exactly those the reference (scripts/gen_docs.py, from the registry) lists, so a metric
registered anywhere else than basewatch/metrics.py would be caught here."""
from __future__ import annotations

import urllib.request

import gen_docs  # scripts/, put on sys.path by tests/conftest.py
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_daemon import health, start_daemon, stop

pytestmark = pytest.mark.e2e


def test_the_metrics_reference_lists_what_a_live_daemon_serves(tmp_path, docker_host):
    process, url = start_daemon({"api_token_env": "API_TOKEN"}, tmp_path, docker_host,
                                env={"API_TOKEN": "t"})
    try:
        health(url, process)
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            served = response.read().decode()
    finally:
        stop(process)
    documented = {name: kind for name, kind, _help, _labels
                  in gen_docs._families(gen_docs.metrics_registry())}
    # prometheus-client serves a counter's or histogram's creation time as a gauge family of
    # its own (NAME_created) once a labelled child exists: part of that metric, not another.
    live = {family.name: family.type for family in text_string_to_metric_families(served)
            if family.name.startswith("basewatch_")
            and not (family.name.endswith("_created")
                     and documented.get(family.name.removesuffix("_created"))
                     in ("counter", "histogram"))}
    assert live == documented, "regenerate docs/metrics.md from the registry the daemon uses"
    # Without `engines:`, the local engine is shown as a pool's engine would be.
    assert 'basewatch_engine_up{engine="local"} 1.0' in served
    page = gen_docs.METRICS_PAGE.read_text()
    for name in live:
        assert f"`{name}" in page, f"{name} is served but not in docs/metrics.md"
