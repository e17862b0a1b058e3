"""runs.engine: the build engine a run went to (engines: a pool of them); NULL for the one
local engine, or a run that never reached one.

A SQLite file main's numbered migration 11 already gave this column (PRAGMA user_version 11)
is stamped with this revision, not upgraded to it (store/migrate.py).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("engine", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite drops a column by a table copy
        batch.drop_column("engine")
