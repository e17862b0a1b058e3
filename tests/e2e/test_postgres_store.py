"""The store on PostgreSQL as a person sets it up: `stack.py postgres` starts Debian's server,
the config names the variable holding its URL, `basewatch serve` creates its tables there, and
`stack.py down` stops the server. Runs whatever --store says (it needs no fixture's server)."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.e2e.test_daemon import health, start_daemon, stop, write_app
from tests.support.stores import postgres_rows
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def stack_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "stack.py"), *args],
                          capture_output=True, text=True, timeout=120)


def test_a_daemon_keeps_its_state_in_the_postgres_stack_py_started(tmp_path):
    state = Path(f"/tmp/bw-pg-{tmp_path.name[-12:]}")  # short: the server's socket lives here
    started = stack_script("postgres", "--dir", str(state))
    try:
        assert started.returncode == 0, started.stderr
        (line,) = started.stdout.splitlines()
        assert line.startswith("export BASEWATCH_DATABASE_URL=postgresql+asyncpg://basewatch:")
        url = line.split("=", 1)[1].strip("'")
        assert "started PostgreSQL on 127.0.0.1:" in started.stderr
        again = stack_script("postgres", "--dir", str(state))  # reused, not started twice
        assert again.stdout == started.stdout and "using PostgreSQL" in again.stderr

        config = {"database": {"url_env": "BASEWATCH_DATABASE_URL"},
                  "registries": [{"host": "127.0.0.1:9"}],
                  "tasks": [{"name": "app", "image": "127.0.0.1:9/app:1",
                             "context": write_app(tmp_path, "app", "FROM 127.0.0.1:9/b:1\n")}]}
        process, address = start_daemon(config, tmp_path, f"unix://{tmp_path}/no-engine.sock",
                                         env={"BASEWATCH_DATABASE_URL": url})
        health(address, process)
        wait_until(lambda: asyncio.run(postgres_rows(url, "SELECT name, source FROM tasks")), 30,
                   "the config's task registered in PostgreSQL")
        output = stop(process)
        assert f"store: PostgreSQL at 127.0.0.1:{make_url(url).port}/basewatch" in output
        assert url.split("@")[0].split(":")[-1] not in output  # the password is never logged
        assert not (tmp_path / "state" / "basewatch.db").exists()
        assert asyncio.run(postgres_rows(url, "SELECT name, source FROM tasks")) == [
            ("app", "config")]
        assert asyncio.run(postgres_rows(url, "SELECT count(*) FROM alembic_version")) == [(1,)]
    finally:
        stopped = stack_script("down", "--dir", str(state))
        subprocess.run(["rm", "-rf", str(state)])
    assert stopped.returncode == 0 and "stopping postgres" in stopped.stderr


def test_a_daemon_refuses_to_start_on_a_database_url_it_cannot_use(tmp_path):
    config = {"database": {"url_env": "BASEWATCH_DATABASE_URL"}}
    process, _ = start_daemon(config, tmp_path, f"unix://{tmp_path}/no-engine.sock",
                              env={"BASEWATCH_DATABASE_URL": "mysql://root:hunter2@db/x"})
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "database.url_env: BASEWATCH_DATABASE_URL is not a PostgreSQL URL" in output
    assert "hunter2" not in output
