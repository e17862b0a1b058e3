"""Context uploads for quick builds: streamed to disk under a size limit, then extracted safely,
a few at a time."""
from __future__ import annotations

import asyncio
import json
import tempfile
import weakref
from pathlib import Path

from typing import AsyncIterator

from aiohttp import BodyPartReader, web

UPLOAD_CHUNK = 1024 * 1024
# Each upload may take twice max_context_bytes of disk (the spooled body and what it unpacks
# to) and a thread while it unpacks: beyond these, uploads wait, their bodies unread.
UPLOADS_AT_ONCE = 2
_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = \
    weakref.WeakKeyDictionary()


def upload_slots() -> asyncio.Semaphore:
    """This event loop's slots for uploads in progress."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(UPLOADS_AT_ONCE)
    return slots


def _too_large(limit: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit, actual_size=limit + 1, content_type="application/json",
        text=json.dumps({"error": f"the build context is larger than the daemon's limit of "
                                  f"{limit} bytes (max_context_bytes): add a .dockerignore"}))


async def receive_upload(request: web.Request, destination: Path, limit: int,
                         part: BodyPartReader | None = None) -> None:
    """Save the request body (a context tarball), or its multipart `part` holding one, and
    extract it into `destination`."""
    from basewatch.builder.contexts.archive import extract_context

    if part is None and request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    async with upload_slots():
        destination.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=destination.parent) as spool:
            size = 0
            async for chunk in _chunks(request, part):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                spool.write(chunk)
            spool.seek(0)
            await asyncio.to_thread(extract_context, spool, destination, limit)


async def _chunks(request: web.Request, part: BodyPartReader | None) -> AsyncIterator[bytes]:
    if part is None:
        async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
            yield chunk
        return
    while chunk := await part.read_chunk(UPLOAD_CHUNK):
        yield chunk


async def read_part(part: BodyPartReader, limit: int) -> bytes | None:
    """A small multipart part's bytes (a quick run's spec); None when it is over `limit`."""
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)
