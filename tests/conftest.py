"""Fixtures that start the real stack: a Docker Engine and CNCF distribution registries."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import stack  # noqa: E402  (scripts/stack.py: shared with `make demo`)
from tests.support import stores  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--store", choices=["sqlite", "postgres"],
        default=os.environ.get("BASEWATCH_TEST_STORE", "sqlite"),
        help="the database the store's tests and the in-process daemons use: SQLite files "
             "(default) or a PostgreSQL server started for the session (scripts/stack.py)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--store") == "postgres":
        skip = pytest.mark.skip(reason="reaches into the SQLite file itself")
        for item in items:
            if item.get_closest_marker("sqlite_only"):
                item.add_marker(skip)
    else:
        skip = pytest.mark.skip(reason="several daemons share a PostgreSQL store only "
                                       "(--store=postgres)")
        for item in items:
            if item.get_closest_marker("postgres_only"):
                item.add_marker(skip)
    group_for_workers(config, items)


def pytest_report_header(config):
    return f"basewatch store: {config.getoption('--store')}"


@pytest.fixture(scope="session", autouse=True)
def store_database(request):
    """With --store=postgres: one PostgreSQL server for the session (Debian's postgresql, as
    the `postgres` user, no fsync), each test's store a database of its own on it."""
    if request.config.getoption("--store") != "postgres":
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="basewatch-postgres-"))
    server = stack.Postgres(root, stack.free_port(), durable=False).start()
    stores.use_postgres(server.url("postgres"))
    try:
        yield server
    finally:
        stores.use_postgres(None)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


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


@pytest.fixture(autouse=True)
def daemons_on_the_test_store(store_database, monkeypatch):
    """With --store=postgres, an in-process daemon (basewatch.daemon.Daemon) whose config names
    no database keeps its state in its state_dir's PostgreSQL database (tests/support/stores.py)
    instead of the SQLite file there: a restart on the same state_dir finds it again. Daemons
    started as processes keep their config's store."""
    if store_database is None:
        return
    from basewatch.daemon import Daemon

    original = Daemon._open_store

    async def open_test_store(daemon):
        if daemon.config.database is not None:
            return await original(daemon)
        return await stores.open_store(daemon.config.state_dir / "basewatch.db")

    monkeypatch.setattr(Daemon, "_open_store", open_test_store)


# With pytest-xdist (`make test` runs `-n 2 --dist loadgroup`), a file's tests stay on one worker
# (their module fixtures start engines and daemons once), and the tests that need the demo's
# fixed ports (5000, 8080) share one worker, so they never run at the same time.
FIXED_PORTS = {"test_demo.py", "test_quickstart.py"}


def group_for_workers(config, items):
    if not config.pluginmanager.hasplugin("xdist") or config.getoption("dist", "no") == "no":
        return
    for item in items:
        group = "fixed-ports" if item.path.name in FIXED_PORTS else str(item.path)
        item.add_marker(pytest.mark.xdist_group(group))
