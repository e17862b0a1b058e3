"""Run ids are the run's sequence number (`ca<seq>`), taken in the order runs are queued and
never given twice, on either database; each run is written once, numbered as it is inserted."""
from __future__ import annotations

from sqlalchemy import select, text

from basewatch.models import RunRequest, RunType, SourceCommit, Trigger
from basewatch.store.schema import runs

PLATFORM = "linux/amd64"


def manual(task: str) -> RunRequest:
    return RunRequest(task, Trigger.MANUAL, RunType.QUICK_BUILD, PLATFORM)


def commit(task: str, sha: str) -> RunRequest:
    return RunRequest(task, Trigger.COMMIT, RunType.AUTO_BUILD, PLATFORM, "",
                      source_commit=SourceCommit(sha, "main"))


async def numbered(store) -> list[tuple[int, str, str]]:
    rows = await store.database.fetchall(select(runs.c.seq, runs.c.id, runs.c.task)
                                         .order_by(runs.c.seq))
    return [(row["seq"], row["id"], row["task"]) for row in rows]


async def test_a_batch_is_numbered_in_the_order_it_was_asked_for(store):
    assert await store.runs.queue([manual(f"app{n}") for n in range(4)]) == \
        ["ca1", "ca2", "ca3", "ca4"]
    assert await store.runs.queue([manual("web")]) == ["ca5"]
    assert await numbered(store) == [(1, "ca1", "app0"), (2, "ca2", "app1"),
                                     (3, "ca3", "app2"), (4, "ca4", "app3"), (5, "ca5", "web")]


async def test_a_run_left_out_takes_no_id_and_the_others_keep_their_order(store):
    assert await store.runs.queue([commit("app", "a" * 40)]) == ["ca1"]
    # The known commit is left out; its number is spent, as an insert that conflicts spends it.
    assert await store.runs.queue([manual("web"), commit("app", "a" * 40),
                                   commit("app", "b" * 40)]) == ["ca2", "ca4"]
    assert [(seq, task) for seq, _, task in await numbered(store)] == \
        [(1, "app"), (2, "web"), (4, "app")]


async def test_numbers_continue_past_the_newest_run_even_once_it_is_gone(store):
    await store.runs.queue([manual("app"), manual("app"), manual("app")])
    async with store.database.transaction() as db:
        await db.execute(text("DELETE FROM runs"))
    assert await store.runs.queue([manual("app"), manual("web")]) == ["ca4", "ca5"]
