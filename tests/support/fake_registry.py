"""A registry stand-in for unit tests: what registration and planning ask of one."""
from __future__ import annotations

from types import SimpleNamespace

from tests.support.fake_engine import DIGEST


class SeenDigests:
    """The registry holds `digest` for every base, on every platform (no index)."""

    def __init__(self, digest: str = DIGEST):
        self.digest = digest

    async def platform_digest(self, ref, platform):
        return SimpleNamespace(digest=self.digest, index_digest=None)
