"""Fixtures the unit tests share: a real SQLite store in a temporary folder. A test module
that needs the store elsewhere (beside a state folder's logs) defines its own `store`."""
from __future__ import annotations

import pytest

from tests.support.stores import open_store


@pytest.fixture
async def store(tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    yield store
    await store.close()
