"""A response body from a server we do not trust, read within a limit: a hostile registry or
git host could otherwise send an endless one and the daemon would hold all of it."""
from __future__ import annotations

import aiohttp

CHUNK = 1 << 16


async def read_bounded(response: aiohttp.ClientResponse, limit: int,
                       too_large: Exception) -> bytes:
    """The body, or `too_large` raised once it passes `limit` bytes (at once, when the
    response says so in Content-Length)."""
    if response.content_length is not None and response.content_length > limit:
        raise too_large
    body = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)
