"""Several daemons on one database: who they are, what each has claimed, and what every one of
them must be able to read.

- daemons: each running daemon's row, its heartbeat renewing the lease on what it claimed.
- runs.daemon: the daemon that claimed a run (NULL: queued, or a run of an older version).
- engine_slots: a slot of a pool engine held by a run, whichever daemon runs it.
- notification_events: registry notifications already received, by event id, so one sent to
  two daemons (or sent again) triggers once.
- run_log_chunks: a run's log, in order, readable through any daemon.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daemons",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("started_at", sa.Text, nullable=False),
        sa.Column("heartbeat_at", sa.Text, nullable=False),
        sa.Column("listen", sa.Text),
    )
    op.add_column("runs", sa.Column("daemon", sa.Text))
    op.create_table(
        "engine_slots",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("engine", sa.Text, nullable=False),
        sa.Column("daemon", sa.Text, nullable=False),
        sa.Column("claimed_at", sa.Text, nullable=False),
    )
    op.create_index("engine_slots_by_engine", "engine_slots", ["engine"])
    op.create_table(
        "notification_events",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("received_at", sa.Text, nullable=False),
    )
    op.create_index("notification_events_by_received_at", "notification_events",
                    ["received_at"])
    op.create_table(
        "run_log_chunks",
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "position"),
    )


def downgrade() -> None:
    op.drop_table("run_log_chunks")
    op.drop_index("notification_events_by_received_at", "notification_events")
    op.drop_table("notification_events")
    op.drop_index("engine_slots_by_engine", "engine_slots")
    op.drop_table("engine_slots")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("daemon")
    op.drop_table("daemons")
