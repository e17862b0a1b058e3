"""Bring a database to the schema this version needs, at start, as one transaction.

Alembic runs the revisions in store/alembic/versions on either database. A SQLite file made
before Alembic (PRAGMA user_version 1-10, no alembic_version table) first runs what is left of
the numbered migrations it was made with (store/legacy_migrations.py), then is stamped as the
baseline revision, which describes exactly that schema: nothing is rebuilt, nothing lost.
"""
from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from basewatch.store.legacy_migrations import MIGRATIONS

BASELINE = "0001"  # the revision that is the legacy schema at MIGRATIONS' last number
# Daemons starting together on one PostgreSQL migrate one after the other.
_MIGRATION_LOCK = 0x62617365  # "base"


async def migrate(database) -> None:
    async with database.transaction() as connection:
        if database.dialect == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": _MIGRATION_LOCK})
        await connection.run_sync(_upgrade)


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", "basewatch.store:alembic")
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    config = _alembic_config(connection)
    if connection.dialect.name == "sqlite" and _legacy_sqlite(connection):
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")


def _legacy_sqlite(connection: Connection) -> bool:
    """Bring a pre-Alembic SQLite database to the last numbered migration; whether it was one."""
    version = connection.exec_driver_sql("PRAGMA user_version").scalar()
    if version == 0 or inspect(connection).has_table("alembic_version"):
        return False
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in filter(str.strip, script.split(";")):
            connection.exec_driver_sql(statement)
        connection.exec_driver_sql(f"PRAGMA user_version={number}")
    return True
