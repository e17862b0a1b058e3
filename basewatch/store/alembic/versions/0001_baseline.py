"""The schema as the numbered SQLite migrations 1-10 left it: tasks, the graph, watched
digests, runs and their steps, timer marks, git heads, webhook secrets, published images.

A SQLite database made before Alembic (PRAGMA user_version 1-10) is brought to 10 by
store/legacy_migrations.py and stamped with this revision, not built again.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Double = sa.Float().with_variant(sa.REAL(), "sqlite")
SOURCE_KEY_WHERE = sa.text("source_key IS NOT NULL AND retry_of IS NULL")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.CheckConstraint("source IN ('config', 'api')", name="tasks_source"))
    op.create_table(
        "watched_digests",
        sa.Column("base", sa.Text, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("digest", sa.Text),
        sa.Column("index_digest", sa.Text),
        sa.Column("checked_at", sa.Text),
        sa.Column("changed_at", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("base", "platform"))
    op.create_table(
        "dependencies",
        sa.Column("task", sa.Text, sa.ForeignKey("tasks.name", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("base", sa.Text, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("digest_at_build", sa.Text),
        sa.PrimaryKeyConstraint("task", "base", "platform"),
        sa.CheckConstraint("kind IN ('runtime', 'buildtime')", name="dependencies_kind"))
    op.create_index("dependencies_by_base", "dependencies", ["base", "platform"])
    op.create_table(
        "runs",
        sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("run_type", sa.Text, nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("queued_at", sa.Text, nullable=False),
        sa.Column("started_at", sa.Text),
        sa.Column("finished_at", sa.Text),
        sa.Column("base_digests", sa.Text, nullable=False, server_default="{}"),
        sa.Column("outputs", sa.Text, nullable=False, server_default="[]"),
        sa.Column("error", sa.Text),
        sa.Column("not_before", sa.Text),
        sa.Column("retry_of", sa.Text),
        sa.Column("spec", sa.Text),
        sa.Column("run_values", sa.Text, nullable=False, server_default="{}"),
        sa.Column("git_revision", sa.Text),
        sa.Column("archived", sa.Integer, nullable=False, server_default="0"),
        sa.Column("archive_ref", sa.Text),
        sa.Column("trigger_data", sa.Text),
        sa.Column("source_key", sa.Text),
        sa.Column("registry", sa.Text),
        sqlite_autoincrement=True)
    op.create_index("runs_by_task", "runs", ["task", "seq"])
    op.create_index("runs_by_status", "runs", ["status"])
    op.create_index("runs_by_queued_at", "runs", ["queued_at"])
    op.create_index("runs_by_source", "runs", ["task", "source_key"], unique=True,
                    sqlite_where=SOURCE_KEY_WHERE, postgresql_where=SOURCE_KEY_WHERE)
    op.create_table(
        "timer_marks",
        sa.Column("task", sa.Text, sa.ForeignKey("tasks.name", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("timer", sa.Text, nullable=False),
        sa.Column("schedule", sa.Text, nullable=False),
        sa.Column("last_scheduled", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("task", "timer"))
    op.create_table(
        "git_heads",
        sa.Column("remote", sa.Text, nullable=False),
        sa.Column("branch", sa.Text, nullable=False),
        sa.Column("commit_sha", sa.Text, nullable=False),
        sa.Column("seen_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("remote", "branch"))
    op.create_table(
        "task_webhooks",
        sa.Column("task", sa.Text, primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("provider", sa.Text),
        sa.Column("context", sa.Text),
        sa.Column("hook_id", BigInt))
    op.create_table(
        "task_publishes",
        sa.Column("task", sa.Text, sa.ForeignKey("tasks.name", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("image", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("task", "image"))
    op.create_table(
        "run_steps",
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("step_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("started_after", Double),
        sa.Column("seconds", Double, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("exit_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("run_id", "step_id"))


def downgrade() -> None:
    for table in ("run_steps", "task_publishes", "task_webhooks", "git_heads", "timer_marks",
                  "runs", "dependencies", "watched_digests", "tasks"):
        op.drop_table(table)
