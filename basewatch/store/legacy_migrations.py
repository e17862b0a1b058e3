"""The numbered SQLite migrations from before Alembic; PRAGMA user_version records how many a
database has run. Frozen: store/migrate.py finishes them for a database an older version made,
then hands it to Alembic at the baseline revision (store/alembic/versions/0001_baseline.py).
A new change to the schema is an Alembic revision, never a number here."""

MIGRATIONS: list[str] = [
    # 1: tasks, the dependency graph, watched digests and runs.
    """
    CREATE TABLE tasks (
        name        TEXT PRIMARY KEY,
        source      TEXT NOT NULL CHECK (source IN ('config', 'api')),
        definition  TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE TABLE watched_digests (
        base          TEXT NOT NULL,
        platform      TEXT NOT NULL,
        digest        TEXT,
        index_digest  TEXT,
        checked_at    TEXT,
        changed_at    TEXT,
        last_error    TEXT,
        PRIMARY KEY (base, platform)
    );
    CREATE TABLE dependencies (
        task             TEXT NOT NULL REFERENCES tasks(name) ON DELETE CASCADE,
        base             TEXT NOT NULL,
        platform         TEXT NOT NULL,
        kind             TEXT NOT NULL CHECK (kind IN ('runtime', 'buildtime')),
        digest_at_build  TEXT,
        PRIMARY KEY (task, base)
    );
    CREATE INDEX dependencies_by_base ON dependencies (base, platform);
    -- Runs outlive their task: history stays readable after a task is deleted.
    CREATE TABLE runs (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        id            TEXT NOT NULL UNIQUE,
        task          TEXT NOT NULL,
        run_type      TEXT NOT NULL,
        trigger       TEXT NOT NULL,
        status        TEXT NOT NULL,
        platform      TEXT NOT NULL,
        reason        TEXT NOT NULL DEFAULT '',
        queued_at     TEXT NOT NULL,
        started_at    TEXT,
        finished_at   TEXT,
        base_digests  TEXT NOT NULL DEFAULT '{}',
        outputs       TEXT NOT NULL DEFAULT '[]',
        error         TEXT
    );
    CREATE INDEX runs_by_task ON runs (task, seq);
    CREATE INDEX runs_by_status ON runs (status);
    """,
    # 2: the settle window (a run waits until not_before) and re-queue-once after a crash.
    """
    ALTER TABLE runs ADD COLUMN not_before TEXT;
    ALTER TABLE runs ADD COLUMN retry_of TEXT
    """,
    # 3: quick runs carry their own build spec; git revision, --set values, archiving.
    """
    ALTER TABLE runs ADD COLUMN spec TEXT;
    ALTER TABLE runs ADD COLUMN run_values TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE runs ADD COLUMN git_revision TEXT;
    ALTER TABLE runs ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN archive_ref TEXT;
    CREATE INDEX runs_by_queued_at ON runs (queued_at)
    """,
    # 4: a task built for several platforms has an edge per (base, platform).
    """
    CREATE TABLE dependencies_by_platform (
        task             TEXT NOT NULL REFERENCES tasks(name) ON DELETE CASCADE,
        base             TEXT NOT NULL,
        platform         TEXT NOT NULL,
        kind             TEXT NOT NULL CHECK (kind IN ('runtime', 'buildtime')),
        digest_at_build  TEXT,
        PRIMARY KEY (task, base, platform)
    );
    INSERT INTO dependencies_by_platform SELECT task, base, platform, kind, digest_at_build
        FROM dependencies;
    DROP TABLE dependencies;
    ALTER TABLE dependencies_by_platform RENAME TO dependencies;
    CREATE INDEX dependencies_by_base ON dependencies (base, platform)
    """,
    # 5: what fired a run, as data (JSON; for a base-image run its reference, platform, digest).
    """
    ALTER TABLE runs ADD COLUMN trigger_data TEXT
    """,
    # 6: per task and timer, the last scheduled fire handled (a restart catches up once), and
    # the schedule it was counted on (a new schedule starts from now).
    """
    CREATE TABLE timer_marks (
        task            TEXT NOT NULL REFERENCES tasks(name) ON DELETE CASCADE,
        timer           TEXT NOT NULL,
        schedule        TEXT NOT NULL,
        last_scheduled  TEXT NOT NULL,
        PRIMARY KEY (task, timer)
    )
    """,
    # 7: one run per (task, commit): a commit or pull-request run's key, unique per task (a
    # re-run of an interrupted run carries its key too, and is let through).
    """
    ALTER TABLE runs ADD COLUMN source_key TEXT;
    CREATE UNIQUE INDEX runs_by_source ON runs (task, source_key)
        WHERE source_key IS NOT NULL AND retry_of IS NULL
    """,
    # 8: the branch heads the git poller last saw, by remote: a head that moved while the
    # daemon was down is seen as moved at its first poll after the start.
    """
    CREATE TABLE git_heads (
        remote      TEXT NOT NULL,
        branch      TEXT NOT NULL,
        commit_sha  TEXT NOT NULL,
        seen_at     TEXT NOT NULL,
        PRIMARY KEY (remote, branch)
    )
    """,
    # 9: the webhook secrets the daemon keeps, per task: for a hook it registered on the
    # repository (its id, and the context it was registered for) or one added by hand. Not
    # tied to the task's row: a hook is registered before its task is stored.
    """
    CREATE TABLE task_webhooks (
        task      TEXT PRIMARY KEY,
        secret    TEXT NOT NULL,
        provider  TEXT,
        context   TEXT,
        hook_id   INTEGER
    )
    """,
    # 10: a task file's steps, each as it ended, kept with its run (and deleted with it);
    # the registry a run was given for itself (`task run --registry`), NULL: the config's;
    # the images a task file's push steps publish under a stable tag, read at registration
    # (a Dockerfile task's are its `images`, read from its definition).
    """
    ALTER TABLE runs ADD COLUMN registry TEXT;
    CREATE TABLE task_publishes (
        task   TEXT NOT NULL REFERENCES tasks(name) ON DELETE CASCADE,
        image  TEXT NOT NULL,
        PRIMARY KEY (task, image)
    );
    CREATE TABLE run_steps (
        run_id         TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        position       INTEGER NOT NULL,
        step_id        TEXT NOT NULL,
        kind           TEXT NOT NULL,
        action         TEXT NOT NULL,
        status         TEXT NOT NULL,
        started_after  REAL,
        seconds        REAL NOT NULL,
        attempts       INTEGER NOT NULL,
        exit_code      INTEGER,
        error          TEXT,
        PRIMARY KEY (run_id, step_id)
    )
    """,
]
