"""The store's tables, as SQLAlchemy Core metadata: one schema for SQLite and PostgreSQL.

Moments are ISO 8601 text in both (what the SQLite store always wrote, so existing databases
keep their rows as they are); queries that compare them as instants go through `instant()`.
JSON columns are text too, read and written by the store's own modules. Alembic's revisions
(store/alembic/versions) build this schema; tests/unit/store/test_schema.py checks that a
migrated database matches it.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    LargeBinary,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    REAL,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)

metadata = MetaData()

# SQLite's 64-bit INTEGER (AUTOINCREMENT needs exactly that type); PostgreSQL's BIGINT.
BigInt = BigInteger().with_variant(Integer(), "sqlite")
# Double precision on PostgreSQL; SQLite's REAL (the same 8 bytes) as the old schema named it.
Double = Float().with_variant(REAL(), "sqlite")

tasks = Table(
    "tasks", metadata,
    Column("name", Text, primary_key=True),
    Column("source", Text, nullable=False),
    Column("definition", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    CheckConstraint("source IN ('config', 'api')", name="tasks_source"),
)

watched_digests = Table(
    "watched_digests", metadata,
    Column("base", Text, nullable=False),
    Column("platform", Text, nullable=False),
    Column("digest", Text),
    Column("index_digest", Text),
    Column("checked_at", Text),
    Column("changed_at", Text),
    Column("last_error", Text),
    PrimaryKeyConstraint("base", "platform"),
)

dependencies = Table(
    "dependencies", metadata,
    Column("task", Text, ForeignKey("tasks.name", ondelete="CASCADE"), nullable=False),
    Column("base", Text, nullable=False),
    Column("platform", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("digest_at_build", Text),
    PrimaryKeyConstraint("task", "base", "platform"),
    CheckConstraint("kind IN ('runtime', 'buildtime')", name="dependencies_kind"),
    Index("dependencies_by_base", "base", "platform"),
)

# Runs outlive their task: history stays readable after a task is deleted.
runs = Table(
    "runs", metadata,
    Column("seq", BigInt, primary_key=True, autoincrement=True),
    Column("id", Text, nullable=False, unique=True),
    Column("task", Text, nullable=False),
    Column("run_type", Text, nullable=False),
    Column("trigger", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("platform", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("queued_at", Text, nullable=False),
    Column("started_at", Text),
    Column("finished_at", Text),
    Column("base_digests", Text, nullable=False, server_default="{}"),
    Column("outputs", Text, nullable=False, server_default="[]"),
    Column("error", Text),
    Column("not_before", Text),
    Column("retry_of", Text),
    Column("spec", Text),
    Column("run_values", Text, nullable=False, server_default="{}"),
    Column("git_revision", Text),
    Column("archived", Integer, nullable=False, server_default="0"),
    Column("archive_ref", Text),
    Column("trigger_data", Text),
    # A commit or pull-request run's key: one run per (task, commit), re-runs let through.
    Column("source_key", Text),
    Column("registry", Text),
    # The build engine a run went to (engines: a pool of them); NULL: the one local engine,
    # or a run that never reached one.
    Column("engine", Text),
    # The daemon that claimed it (daemons.id); NULL while queued, and for older runs.
    Column("daemon", Text),
    Index("runs_by_task", "task", "seq"),
    Index("runs_by_status", "status"),
    Index("runs_by_queued_at", "queued_at"),
    sqlite_autoincrement=True,  # ids are never reused, even after the newest run is purged
)
SOURCE_KEY_WHERE = text("source_key IS NOT NULL AND retry_of IS NULL")
Index("runs_by_source", runs.c.task, runs.c.source_key, unique=True,
      sqlite_where=SOURCE_KEY_WHERE, postgresql_where=SOURCE_KEY_WHERE)

timer_marks = Table(
    "timer_marks", metadata,
    Column("task", Text, ForeignKey("tasks.name", ondelete="CASCADE"), nullable=False),
    Column("timer", Text, nullable=False),
    Column("schedule", Text, nullable=False),
    Column("last_scheduled", Text, nullable=False),
    PrimaryKeyConstraint("task", "timer"),
)

git_heads = Table(
    "git_heads", metadata,
    Column("remote", Text, nullable=False),
    Column("branch", Text, nullable=False),
    Column("commit_sha", Text, nullable=False),
    Column("seen_at", Text, nullable=False),
    PrimaryKeyConstraint("remote", "branch"),
)

# Not tied to the task's row: a hook is registered before its task is stored.
task_webhooks = Table(
    "task_webhooks", metadata,
    Column("task", Text, primary_key=True),
    Column("secret", Text, nullable=False),
    Column("provider", Text),
    Column("context", Text),
    Column("hook_id", BigInt),
)

task_publishes = Table(
    "task_publishes", metadata,
    Column("task", Text, ForeignKey("tasks.name", ondelete="CASCADE"), nullable=False),
    Column("image", Text, nullable=False),
    PrimaryKeyConstraint("task", "image"),
)

run_steps = Table(
    "run_steps", metadata,
    Column("run_id", Text, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("step_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("started_after", Double),
    Column("seconds", Double, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("exit_code", Integer),
    Column("error", Text),
    PrimaryKeyConstraint("run_id", "step_id"),
)

# Several daemons on one database (PostgreSQL): each one's row, its heartbeat renewing the lease
# on the runs and engine slots it holds.
daemons = Table(
    "daemons", metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("heartbeat_at", Text, nullable=False),
    Column("listen", Text),
)

# A pool engine's slot held by a run, whichever daemon runs it: an engine's load is its rows.
engine_slots = Table(
    "engine_slots", metadata,
    Column("run_id", Text, primary_key=True),
    Column("engine", Text, nullable=False),
    Column("daemon", Text, nullable=False),
    Column("claimed_at", Text, nullable=False),
    Index("engine_slots_by_engine", "engine"),
)

# Registry notifications received, by event id: one sent to two daemons triggers once.
notification_events = Table(
    "notification_events", metadata,
    Column("id", Text, primary_key=True),
    Column("received_at", Text, nullable=False),
    Index("notification_events_by_received_at", "received_at"),
)

# A run's log in order, where every daemon can read it.
run_log_chunks = Table(
    "run_log_chunks", metadata,
    Column("run_id", Text, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("run_id", "position"),
)
