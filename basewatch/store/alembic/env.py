"""Alembic's entry point, run by store/migrate.py on the connection the store opened (never
from an alembic.ini: the daemon migrates its own database at start, as it always has)."""
from alembic import context

from basewatch.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  # SQLite alters a table by copying it; batch mode lets a revision say
                  # ALTER once for both databases.
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
