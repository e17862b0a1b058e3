"""What every HTTP handler of the daemon shares: JSON errors, constant-time token checks and
bounded bodies."""
from __future__ import annotations

import hmac

from aiohttp import web


def json_error(status: int, message: str, headers: dict[str, str] | None = None
               ) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def token_matches(offered: str | None, token: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a stranger chooses these.
    # aiohttp hands over header bytes that are not UTF-8 as surrogates: encoded back as they
    # came, they are simply a wrong token.
    return offered is not None and hmac.compare_digest(
        offered.encode("utf-8", "surrogateescape"), token.encode())


async def read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` bytes (checked as it arrives, too)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
