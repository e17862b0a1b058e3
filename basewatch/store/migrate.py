"""Bring a database to the schema this version needs, at start, as one transaction.

Alembic runs the revisions in store/alembic/versions on either database. A SQLite file made
before Alembic (PRAGMA user_version 1-10, no alembic_version table) first runs what is left of
the numbered migrations it was made with (store/legacy_migrations.py), then is stamped as the
baseline revision, which describes exactly that schema: nothing is rebuilt, nothing lost. A
file at user_version 11 (main's numbered migration 11, runs.engine, written just before the
move) is the baseline plus that column: it is stamped as revision 0002.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from basewatch.errors import BasewatchError
from basewatch.store.legacy_migrations import MIGRATIONS

if TYPE_CHECKING:
    from alembic.config import Config

BASELINE = "0001"  # the revision that is the legacy schema at MIGRATIONS' last number
# The newest revision: they are numbered one after the other, each file named by its number
# (tests/unit/store/test_upgrade.py checks this is Alembic's own head). A database already
# there is left alone without importing Alembic at all, as on every restart.
HEAD = max(path.name.partition("_")[0] for path in
           (Path(__file__).parent / "alembic" / "versions").glob("[0-9]*_*.py"))
# Numbered migrations written on main after the move to Alembic (user_version past
# MIGRATIONS' last number): the revision that holds the same schema. 11: runs.engine.
LATER_NUMBERS = {11: "0002"}
# Daemons starting together on one PostgreSQL migrate one after the other.
_MIGRATION_LOCK = 0x62617365  # "base"


async def migrate(database) -> None:
    async with database.transaction() as connection:
        if database.dialect == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": _MIGRATION_LOCK})
        if not await connection.run_sync(_at_head):
            await connection.run_sync(_upgrade)


def _at_head(connection: Connection) -> bool:
    return inspect(connection).has_table("alembic_version") and connection.execute(
        text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]


def _alembic_config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "basewatch.store:alembic")
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    from alembic import command

    config = _alembic_config(connection)
    if connection.dialect.name == "sqlite" and (stamp := _legacy_sqlite(connection)):
        command.stamp(config, stamp)
    command.upgrade(config, "head")


def _legacy_sqlite(connection: Connection) -> str | None:
    """Bring a pre-Alembic SQLite database to the last numbered migration; the revision its
    schema then is, None when it was no such database."""
    version = connection.exec_driver_sql("PRAGMA user_version").scalar()
    if version == 0 or inspect(connection).has_table("alembic_version"):
        return None
    if version in LATER_NUMBERS:
        return LATER_NUMBERS[version]
    if version > len(MIGRATIONS):
        raise BasewatchError(f"the state database is at numbered migration {version}, which this "
                         "version of basewatch does not know: run the version that made it")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in filter(str.strip, script.split(";")):
            connection.exec_driver_sql(statement)
        connection.exec_driver_sql(f"PRAGMA user_version={number}")
    return BASELINE
