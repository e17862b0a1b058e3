"""Runs' logs in the database, as rows of bytes keyed by where they start in the log: a copy
that every daemon on the same database can read, also while the run is still going. A run's
rows go with it (ON DELETE CASCADE), so the retention purge removes them too."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select

from basewatch.store.database import Database
from basewatch.store.schema import run_log_chunks

# A row holds at most this much: a read fetches a few rows, so its memory stays bounded.
MAX_CHUNK_BYTES = 256 * 1024
# The most a read returns (whole rows, so up to one row more than asked for).
MAX_READ_BYTES = 1024 * 1024


class SQLiteRunLogStore:
    def __init__(self, database: Database):
        self.database = database

    async def append(self, pieces: Sequence[tuple[str, int, bytes]]) -> None:
        """Write (run id, position, bytes) pieces, of any runs, in one transaction. Writing a
        piece again at the same position (a retry after a failure the database may have
        committed anyway, with more bytes since) replaces what it wrote: the same bytes, longer."""
        rows = [{"run_id": run_id, "position": position + start,
                 "data": data[start:start + MAX_CHUNK_BYTES]}
                for run_id, position, data in pieces
                for start in range(0, len(data), MAX_CHUNK_BYTES)]
        if not rows:
            return
        insert = self.database.insert(run_log_chunks)
        async with self.database.transaction() as db:
            await db.execute(insert.on_conflict_do_update(
                index_elements=[run_log_chunks.c.run_id, run_log_chunks.c.position],
                set_={"data": insert.excluded.data}), rows)

    async def read(self, run_id: str, offset: int, limit: int = MAX_READ_BYTES) -> bytes:
        """The log's bytes from `offset` on, about `limit` of them at most; b"" past its end."""
        chunks = run_log_chunks.c
        # The row holding `offset`, found through the primary key, and those after it.
        first = (select(func.max(chunks.position))
                 .where(chunks.run_id == run_id, chunks.position <= offset).scalar_subquery())
        rows = await self.database.fetchall(
            select(chunks.position, chunks.data)
            .where(chunks.run_id == run_id, chunks.position >= func.coalesce(first, 0))
            .order_by(chunks.position)
            .limit(max(1, -(-limit // MAX_CHUNK_BYTES)) + 1))
        read = bytearray()
        for row in rows:
            data = bytes(row["data"])
            read += data[max(0, offset - row["position"]):]
            if len(read) >= limit:
                break
        return bytes(read)

    async def size(self, run_id: str) -> int:
        """How many bytes of the run's log the database holds (0 for none)."""
        chunks = run_log_chunks.c
        row = await self.database.fetchone(
            select(chunks.position, func.length(chunks.data).label("length"))
            .where(chunks.run_id == run_id).order_by(chunks.position.desc()).limit(1))
        return row["position"] + row["length"] if row else 0
