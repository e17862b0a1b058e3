"""The webhook secrets the daemon keeps per task: one row a task, for the hook it registered on
the task's repository or for one a person added by hand. The state dir is the daemon's own;
nothing here reaches a log."""
from __future__ import annotations

from sqlalchemy import delete, select

from basewatch.models import TaskWebhook
from basewatch.redaction import KNOWN
from basewatch.store.database import Database
from basewatch.store.schema import task_webhooks



def _webhook(row) -> TaskWebhook:
    KNOWN.add(row["secret"])  # a secret read is a secret the daemon's log masks
    return TaskWebhook(row["task"], row["secret"], row["provider"], row["context"],
                       row["hook_id"])


def _values(webhook: TaskWebhook) -> dict:
    return {"task": webhook.task, "secret": webhook.secret, "provider": webhook.provider,
            "context": webhook.context, "hook_id": webhook.hook_id}


class SQLiteWebhookStore:
    def __init__(self, database: Database):
        self.database = database

    async def get(self, task: str) -> TaskWebhook | None:
        row = await self.database.fetchone(
            select(task_webhooks).where(task_webhooks.c.task == task))
        return None if row is None else _webhook(row)

    async def all(self) -> list[TaskWebhook]:
        rows = await self.database.fetchall(select(task_webhooks).order_by(task_webhooks.c.task))
        return [_webhook(row) for row in rows]

    async def put(self, webhook: TaskWebhook) -> None:
        insert = self.database.insert(task_webhooks).values(_values(webhook))
        async with self.database.transaction() as db:
            await db.execute(insert.on_conflict_do_update(
                index_elements=[task_webhooks.c.task],
                set_={name: insert.excluded[name] for name in _values(webhook) if name != "task"}))

    async def put_if_absent(self, webhook: TaskWebhook) -> TaskWebhook:
        async with self.database.transaction() as db:
            await db.execute(self.database.insert(task_webhooks).values(_values(webhook))
                             .on_conflict_do_nothing())
        return await self.get(webhook.task) or webhook

    async def delete(self, task: str) -> None:
        async with self.database.transaction() as db:
            await db.execute(delete(task_webhooks).where(task_webhooks.c.task == task))
