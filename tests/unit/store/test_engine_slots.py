"""Build engines' slots held by runs: least loaded by share first, none past an engine's max
however many daemons claim at once, freed on release; in memory (one daemon) and in the store
(every daemon on the database)."""
from __future__ import annotations

import asyncio

import pytest

from basewatch.store import LocalEngineSlots, SharedEngineSlots
from basewatch.store.engine_slots import least_loaded
from tests.support.stores import on_postgres, open_store

ENGINES = [("a", 1), ("b", 2)]


def test_least_loaded_is_by_share_of_slots_then_order():
    assert least_loaded(ENGINES, {}) == "a"
    assert least_loaded(ENGINES, {"a": 1}) == "b"
    assert least_loaded([("a", 2), ("b", 4)], {"a": 1, "b": 1}) == "b"  # 1/2 against 1/4
    assert least_loaded([("a", 2), ("b", 4)], {"a": 1, "b": 2}) == "a"  # equal: the first
    assert least_loaded(ENGINES, {"a": 1, "b": 2}) is None
    assert least_loaded([], {}) is None


@pytest.fixture(params=["memory", "store"])
async def slots(request, tmp_path):
    if request.param == "memory":
        yield LocalEngineSlots()
        return
    store = await open_store(tmp_path / "basewatch.db")
    try:
        yield SharedEngineSlots(store.database)
    finally:
        await store.close()


async def test_claims_fill_the_least_loaded_and_releases_free(slots):
    assert [await slots.claim(f"r{n}", ENGINES, "d1") for n in range(4)] == ["a", "b", "b", None]
    assert await slots.loads() == {"a": 1, "b": 2}
    await slots.release("r1")
    await slots.release("r3")  # held nothing: nothing to free
    await slots.release("r1")
    assert await slots.loads() == {"a": 1, "b": 1}
    assert await slots.claim("r4", ENGINES, "d2") == "b"
    assert await slots.loads(other_than="d1") == {"b": 1}
    assert await slots.loads(other_than="d2") == {"a": 1, "b": 1}
    # Only the candidates count: an engine this claim may not use is no reason to refuse.
    assert await slots.claim("r5", [("c", 1)], "d1") == "c"
    assert await slots.claim("r6", [("c", 1)], "d1") is None
    for run_id in ("r0", "r2", "r4", "r5"):
        await slots.release(run_id)
    assert await slots.loads() == {}


async def test_a_run_that_claims_again_gives_up_the_slot_it_held(slots):
    assert await slots.claim("r1", ENGINES, "d1") == "a"
    assert await slots.claim("r1", ENGINES, "d1") == "a", "its own slot is free to it"
    assert await slots.claim("r1", [("b", 2)], "d1") == "b"
    assert await slots.loads() == {"b": 1}


async def test_many_daemons_claiming_at_once_never_overfill_an_engine(tmp_path):
    """Four daemons (each its own connection pool on one database), 60 claims at once."""
    stores = [await open_store(tmp_path / "basewatch.db") for _ in range(4)]
    try:
        daemons = [SharedEngineSlots(store.database) for store in stores]
        engines = [("a", 3), ("b", 5)]

        async def claims(index: int, slots: SharedEngineSlots) -> list[str | None]:
            return await asyncio.gather(*(slots.claim(f"d{index}-r{n}", engines, f"d{index}")
                                          for n in range(15)))

        got = [engine for found in await asyncio.gather(
            *(claims(index, slots) for index, slots in enumerate(daemons)))
            for engine in found]
        assert sorted(e for e in got if e) == ["a"] * 3 + ["b"] * 5
        assert await daemons[0].loads() == {"a": 3, "b": 5}
        held = [f"d{i}-r{n}" for i in range(4) for n in range(15)]
        await asyncio.gather(*(daemons[n % 4].release(run_id) for n, run_id in enumerate(held)))
        assert await daemons[1].loads() == {}
    finally:
        for store in stores:
            await store.close()


async def test_the_store_shares_slots_on_postgresql_and_keeps_them_in_memory_on_sqlite(
        tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    try:
        kind = SharedEngineSlots if on_postgres() else LocalEngineSlots
        assert isinstance(store.engine_slots, kind)
    finally:
        await store.close()
