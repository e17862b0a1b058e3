"""The webhook secrets the daemon keeps per task, across restarts."""
from __future__ import annotations

from basewatch.models import TaskWebhook
from tests.support.stores import open_store


async def test_a_task_keeps_one_webhook_and_it_outlives_the_connection(tmp_path):
    path = tmp_path / "basewatch.db"
    store = await open_store(path)
    try:
        assert await store.webhooks.get("app") is None
        manual = await store.webhooks.put_if_absent(TaskWebhook("app", "s1"))
        assert manual == TaskWebhook("app", "s1")
        # A second first ask keeps the secret already shown.
        assert (await store.webhooks.put_if_absent(TaskWebhook("app", "s2"))).secret == "s1"
        registered = TaskWebhook("app", "s3", "github", "https://github.com/o/r.git", 7)
        await store.webhooks.put(registered)
        await store.webhooks.put(TaskWebhook("other", "s4"))
    finally:
        await store.close()
    store = await open_store(path)
    try:
        assert await store.webhooks.get("app") == registered
        assert [w.task for w in await store.webhooks.all()] == ["app", "other"]
        await store.webhooks.delete("app")
        assert await store.webhooks.get("app") is None
    finally:
        await store.close()


def test_the_secret_is_not_in_its_repr():
    assert "hush" not in repr(TaskWebhook("app", "hush"))
