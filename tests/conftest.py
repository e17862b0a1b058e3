"""Fixtures that start the real stack: a Docker Engine and CNCF distribution registries."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import stack  # noqa: E402  (scripts/stack.py: shared with `make demo`)


@pytest.fixture(scope="session")
def docker_host() -> str:
    """A working Docker Engine: the one DOCKER_HOST names, or one started for this session."""
    with stack.engine_for_session() as engine:
        yield engine.docker_host


@pytest.fixture
def start_registry(tmp_path: Path):
    """Start a registry on a free loopback port: start_registry(notify_url=..., auth=...)."""
    started: list[stack.Registry] = []

    def start(**options) -> stack.Registry:
        root = tmp_path / f"registry{len(started)}"
        registry = stack.Registry(root, stack.free_port(), **options)
        started.append(registry)
        return registry.start()

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture
def registry(start_registry) -> stack.Registry:
    """One plain registry on a free loopback port."""
    return start_registry()


# With pytest-xdist (`make test` runs `-n 2 --dist loadgroup`), a file's tests stay on one worker
# (their module fixtures start engines and daemons once), and the tests that need the demo's
# fixed ports (5000, 8080) share one worker, so they never run at the same time.
FIXED_PORTS = {"test_demo.py", "test_quickstart.py"}


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("xdist") or config.getoption("dist", "no") == "no":
        return
    for item in items:
        group = "fixed-ports" if item.path.name in FIXED_PORTS else str(item.path)
        item.add_marker(pytest.mark.xdist_group(group))
