"""The webhook secrets the daemon keeps per task: one row a task, for the hook it registered on
the task's repository or for one a person added by hand. The state dir is the daemon's own;
nothing here reaches a log."""
from __future__ import annotations

from basewatch.models import TaskWebhook
from basewatch.redaction import KNOWN
from basewatch.store.database import Database

_COLUMNS = "task, secret, provider, context, hook_id"


def _webhook(row) -> TaskWebhook:
    KNOWN.add(row["secret"])  # a secret read is a secret the daemon's log masks
    return TaskWebhook(row["task"], row["secret"], row["provider"], row["context"],
                       row["hook_id"])


def _values(webhook: TaskWebhook) -> tuple:
    return (webhook.task, webhook.secret, webhook.provider, webhook.context, webhook.hook_id)


class SQLiteWebhookStore:
    def __init__(self, database: Database):
        self.database = database

    async def get(self, task: str) -> TaskWebhook | None:
        row = await self.database.fetchone(
            f"SELECT {_COLUMNS} FROM task_webhooks WHERE task = ?", (task,))
        return None if row is None else _webhook(row)

    async def all(self) -> list[TaskWebhook]:
        rows = await self.database.fetchall(f"SELECT {_COLUMNS} FROM task_webhooks ORDER BY task")
        return [_webhook(row) for row in rows]

    async def put(self, webhook: TaskWebhook) -> None:
        async with self.database.transaction() as db:
            await db.execute(f"INSERT OR REPLACE INTO task_webhooks ({_COLUMNS}) "
                             "VALUES (?, ?, ?, ?, ?)", _values(webhook))

    async def put_if_absent(self, webhook: TaskWebhook) -> TaskWebhook:
        async with self.database.transaction() as db:
            await db.execute(f"INSERT OR IGNORE INTO task_webhooks ({_COLUMNS}) "
                             "VALUES (?, ?, ?, ?, ?)", _values(webhook))
        return await self.get(webhook.task) or webhook

    async def delete(self, task: str) -> None:
        async with self.database.transaction() as db:
            await db.execute("DELETE FROM task_webhooks WHERE task = ?", (task,))
