"""The heads of polled remotes, kept across restarts."""
from __future__ import annotations

from tests.support.stores import open_store

A, B, C = "a" * 40, "b" * 40, "c" * 40


async def test_heads_are_set_per_remote_and_outlive_the_connection(tmp_path):
    path = tmp_path / "basewatch.db"
    store = await open_store(path)
    try:
        assert await store.git_heads.heads() == {}
        await store.git_heads.set_heads("file:///r.git", {"main": A, "dev": B})
        await store.git_heads.set_heads("file:///s.git", {"main": A})
        await store.git_heads.set_heads("file:///r.git", {"main": C, "dev": B})
    finally:
        await store.close()
    store = await open_store(path)
    try:
        assert await store.git_heads.heads() == {"file:///r.git": {"main": C, "dev": B},
                                                 "file:///s.git": {"main": A}}
        await store.git_heads.keep_remotes(["file:///s.git"])
        assert await store.git_heads.heads() == {"file:///s.git": {"main": A}}
        await store.git_heads.set_heads("file:///s.git", {"dev": B})  # main no longer polled
        assert await store.git_heads.heads() == {"file:///s.git": {"dev": B}}
    finally:
        await store.close()
