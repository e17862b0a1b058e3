"""The slots of a pool's build engines, held by runs: which engine each run in progress is on,
whichever daemon runs it, so an engine's max_concurrent_runs holds across every daemon.

Two kinds, one Protocol (protocols.EngineSlots). On PostgreSQL, several daemons share the
database: a run holds a row of `engine_slots`, and claims are taken one at a time across all of
them (a transaction-scoped advisory lock), counting the rows. On SQLite one daemon has the
database: its slots stay in its memory, where they cost nothing.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select, text

from basewatch.store.database import Database, now, to_text
from basewatch.store.schema import engine_slots

# The key of the advisory lock every claim takes ("baseslot"): the migration's is another.
CLAIM_LOCK = 0x62617365736C6F74


def least_loaded(candidates: Sequence[tuple[str, int]], loads: dict[str, int]) -> str | None:
    """The candidate with room whose share of slots in use is least (the first among equals)."""
    with_room = [(loads.get(name, 0) / slots, index, name)
                 for index, (name, slots) in enumerate(candidates)
                 if loads.get(name, 0) < slots]
    return min(with_room)[2] if with_room else None


class LocalEngineSlots:
    """The slots in this process's memory: one daemon has the engines (SQLite, tests)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, str]] = {}  # run id -> (engine, daemon)

    async def claim(self, run_id: str, candidates: Sequence[tuple[str, int]],
                    daemon: str) -> str | None:
        # No await in here: atomic on the loop.
        self._held.pop(run_id, None)
        engine = least_loaded(candidates, Counter(e for e, _ in self._held.values()))
        if engine is not None:
            self._held[run_id] = (engine, daemon)
        return engine

    async def release(self, run_id: str) -> None:
        self._held.pop(run_id, None)

    async def loads(self, other_than: str | None = None) -> dict[str, int]:
        return dict(Counter(e for e, d in self._held.values() if d != other_than))


class SharedEngineSlots:
    """The slots as rows of `engine_slots`, shared by every daemon on the database."""

    def __init__(self, database: Database):
        self.database = database

    async def claim(self, run_id: str, candidates: Sequence[tuple[str, int]],
                    daemon: str) -> str | None:
        names = [name for name, _ in candidates]
        async with self.database.transaction() as db:
            if self.database.dialect == "postgresql":
                # Held to the commit: no other daemon counts the rows until this one's is in.
                # (SQLite's BEGIN IMMEDIATE already makes writers take turns.)
                await db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK})
            # A run claims afresh: a row it may still hold is not counted against it.
            await db.execute(delete(engine_slots).where(engine_slots.c.run_id == run_id))
            rows = await db.execute(
                select(engine_slots.c.engine, func.count())
                .where(engine_slots.c.engine.in_(names)).group_by(engine_slots.c.engine))
            engine = least_loaded(candidates, {name: count for name, count in rows})
            if engine is not None:
                await db.execute(insert(engine_slots).values(
                    run_id=run_id, engine=engine, daemon=daemon, claimed_at=to_text(now())))
        return engine

    async def release(self, run_id: str) -> None:
        async with self.database.transaction() as db:
            await db.execute(delete(engine_slots).where(engine_slots.c.run_id == run_id))

    async def loads(self, other_than: str | None = None) -> dict[str, int]:
        query = select(engine_slots.c.engine, func.count().label("held")) \
            .group_by(engine_slots.c.engine)
        if other_than is not None:
            query = query.where(engine_slots.c.daemon != other_than)
        return {row["engine"]: row["held"] for row in await self.database.fetchall(query)}
