"""The heads of polled git remotes: the commit each (remote, branch) pointed at when last seen."""
from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import delete, insert, select

from basewatch.store.database import Database, now, to_text
from basewatch.store.schema import git_heads


class SQLiteGitHeadStore:
    def __init__(self, database: Database):
        self.database = database

    async def heads(self) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        rows = await self.database.fetchall(
            select(git_heads.c.remote, git_heads.c.branch, git_heads.c.commit_sha))
        for row in rows:
            found.setdefault(row["remote"], {})[row["branch"]] = row["commit_sha"]
        return found

    async def set_heads(self, remote: str, heads: dict[str, str]) -> None:
        stamp = to_text(now())
        async with self.database.transaction() as db:
            await db.execute(delete(git_heads).where(git_heads.c.remote == remote))
            if heads:
                await db.execute(insert(git_heads), [
                    {"remote": remote, "branch": branch, "commit_sha": sha, "seen_at": stamp}
                    for branch, sha in heads.items()])

    async def keep_remotes(self, remotes: Collection[str]) -> None:
        kept = set(remotes)
        async with self.database.transaction() as db:
            rows = (await db.execute(select(git_heads.c.remote).distinct())).scalars()
            gone = [remote for remote in rows if remote not in kept]
            if gone:
                await db.execute(delete(git_heads).where(git_heads.c.remote.in_(gone)))
