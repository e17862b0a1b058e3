"""The heads of polled git remotes: the commit each (remote, branch) pointed at when last seen."""
from __future__ import annotations

from collections.abc import Collection

from basewatch.store.database import Database, now, to_text


class SQLiteGitHeadStore:
    def __init__(self, database: Database):
        self.database = database

    async def heads(self) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for row in await self.database.fetchall("SELECT remote, branch, commit_sha FROM git_heads"):
            found.setdefault(row["remote"], {})[row["branch"]] = row["commit_sha"]
        return found

    async def set_heads(self, remote: str, heads: dict[str, str]) -> None:
        stamp = to_text(now())
        async with self.database.transaction() as db:
            await db.execute("DELETE FROM git_heads WHERE remote = ?", (remote,))
            await db.executemany(
                "INSERT INTO git_heads (remote, branch, commit_sha, seen_at) VALUES (?, ?, ?, ?)",
                [(remote, branch, sha, stamp) for branch, sha in heads.items()])

    async def keep_remotes(self, remotes: Collection[str]) -> None:
        kept = set(remotes)
        async with self.database.transaction() as db:
            rows = await db.execute_fetchall("SELECT DISTINCT remote FROM git_heads")
            gone = [(row["remote"],) for row in rows if row["remote"] not in kept]
            await db.executemany("DELETE FROM git_heads WHERE remote = ?", gone)
